package statsv1

// ServiceName is the stats's go-micro service name. It is also the name of
// its Kubernetes Service, which is what the static selector resolves, so the
// server, every client and deploy/ all take it from here.
const ServiceName = "stats"
