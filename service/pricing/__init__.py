"""Stage 2: catalog versions and lookup; cost = f(event, price), pure and exact."""
