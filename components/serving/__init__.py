"""Serving: the model a server holds, its prediction plan, the protocol codecs (KServe V1 and
the Open Inference Protocol), the HTTP server, infra validation, and KServe manifests."""
