"""Packaging beyond pyproject.toml: the files a wheel ships from outside ``service/``.

The Alembic migrations stay in ``db/`` and the Grafana role in ``deploy/``, at the top of
the repository, and ship inside the package as ``service/migrations`` and
``service/deploy``, so a plain ``pip install .`` (not editable) can migrate and print the
role. ``service.shipped`` finds them in either place.
"""

from setuptools import find_namespace_packages, setup

SHIPPED = {
    "service.migrations": "db",
    "service.migrations.versions": "db/versions",
    "service.deploy": "deploy",
}

setup(
    packages=[
        *find_namespace_packages(include=["service", "service.*"], exclude=["*.__pycache__"]),
        *SHIPPED,
    ],
    package_dir=SHIPPED,
)
