"""Global image descriptors (``gem``, ``dolg``, ``hybrid_swin``, ``ensemble``, ``color-hist``): images to rows."""
