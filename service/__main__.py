"""``python -m service`` runs the ``luc`` command."""

from service.cli import main

main()
