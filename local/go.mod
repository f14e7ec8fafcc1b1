module github.com/micro/kubernetes/local

go 1.26.0

require github.com/micro/kubernetes/proto v0.0.0

require (
	github.com/golang/protobuf v1.5.4 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/miekg/dns v1.1.50 // indirect
	github.com/oxtoacart/bpool v0.0.0-20190530202638-03653db5a59c // indirect
	github.com/patrickmn/go-cache v2.1.0+incompatible // indirect
	github.com/pkg/errors v0.9.1 // indirect
	go-micro.dev/v6 v6.3.10 // indirect
	golang.org/x/mod v0.41.0 // indirect
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sync v0.23.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	golang.org/x/text v0.42.0 // indirect
	golang.org/x/tools v0.49.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

// The monorepo's own modules come from this checkout, in or out of go.work.
replace (
	github.com/micro/kubernetes/pkg/k8s => ../pkg/k8s
	github.com/micro/kubernetes/proto => ../proto
)
