"""Parts every stand-in shares (Kubernetes today; Azure Resource Manager and GitHub next): the threaded
HTTP(S) server, TLS from a generated CA, fault injection, the request log and the `/_sandbox` admin
endpoints. Nothing here knows about any one API: each service renders its own error bodies and headers
through the hooks of `StandIn`."""
