"""Recording batches of usage events: the one place where events flow through every stage."""
