// Package k8s builds go-micro services with the defaults a Kubernetes
// deployment wants. Each default exists because Kubernetes already does the
// job go-micro would otherwise do itself:
//
//   - gRPC server and client: Kubernetes Services, meshes and the kubelet's
//     gRPC probes all speak HTTP/2 gRPC, so one protocol crosses the cluster.
//   - The static selector: Kubernetes does discovery and load balancing. A
//     client asks for service "greeter" and dials "greeter:8080", the DNS name
//     of the Kubernetes Service; kube-proxy or a mesh picks the pod.
//   - An in-memory registry and broker: with Kubernetes doing discovery there
//     is nothing to register with. No multicast (mDNS does not cross pods), no
//     registry server to run, and no Kubernetes API access, so no RBAC.
//   - Bind 0.0.0.0:8080: a pod's port must be reachable on the pod IP, and one
//     well-known port keeps containerPort, Service and selector in step.
//   - Debug.Health registered: the health sidecar calls it for the liveness
//     probe (go-micro v6 no longer registers it by itself). Only Health is
//     exposed, not go-micro's Log, Stats or Trace debug endpoints.
//   - grpc.health.v1.Health registered: the kubelet's native grpc readiness
//     probe asks it, and it answers NOT_SERVING as soon as the service stops.
//   - The fast paths: the server serves unary calls (fastServer) and the
//     client sends them (fastClient) with less work per call than go-micro's,
//     over one multiplexed gRPC connection per address: with one Service
//     address per service, go-micro's pool (a connection per concurrent call,
//     closed after any failed call) only costs. They keep go-micro's
//     behaviour (docs/design.md lists the two differences), hand any call
//     whose options they do not implement to go-micro's own server or client,
//     and switch off with --fast_paths=false (MICRO_FAST_PATHS=false) or
//     FastPaths(false).
//   - No retries (--client_retries=0): a deadline bounds each call,
//     Kubernetes takes failed pods out of the Service, and retries multiply
//     an overload. Set a number and go-micro's client retries.
//   - Bounded messages, headers, bodies and HTTP phases, a graceful stop
//     shorter than the pods' grace period, and undecodable requests answered
//     InvalidArgument: what a pod exposed to a cluster's traffic needs.
//   - Load shedding (limiter): an adaptive limit of requests worked on at
//     once, a queue held to CoDel's bounds, refusals at once beyond
//     --max_in_flight: the pods run without CPU limits, and a server that
//     cannot keep up says so fast rather than queue its callers.
//   - Metrics on a port of their own (MetricsPort), JSON logs and trace
//     context (SetupLogging, SetupTracing): what Prometheus, log collectors
//     and meshes on Kubernetes read.
//
// Every default is an option applied before the caller's, so the caller's
// options win; command-line flags and MICRO_* variables are applied last, when
// the service's Init parses them, and win over both.
package k8s
