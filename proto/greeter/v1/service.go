package greeterv1

// ServiceName is the greeter's go-micro service name. It is also the name of
// its Kubernetes Service, which is what the static selector resolves, so the
// server, every client and deploy/ all take it from here.
const ServiceName = "greeter"

// GreetedSubject is the subject of the Greeted event in the greeter's
// stream, below the stream's name: "greeter.greeted".
const GreetedSubject = "greeted"
