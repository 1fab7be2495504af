"""`fgclip-doctor live`: a short real run with probes."""
