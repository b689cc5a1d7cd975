"""How steps run: the stage runner (checks, journal), the warm worker (its server and client),
the lifeline that ends a run's processes with it, and the in-process walk of the graph."""
