"""The model server: the champion behind KServe's V1 and V2 protocols (``retrain serve``)."""
