"""The Kubernetes API stand-in: store, REST semantics, patching, selectors, admission, discovery, OpenAPI,
server-side tables, eviction, Status errors, controllers and the demo manifests."""
