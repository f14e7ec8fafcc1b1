// Command web is the benchmarks' baseline frontend: the project's own
// handler (web/frontend), on a plain net/http server bounded as the
// project's is, greeting through the baseline greeter with a plain gRPC
// client. No go-micro: the difference from the project's web is what
// go-micro and pkg/k8s add, not what the frontend does.
package main

import (
	"context"
	"flag"
	"log"

	"go-micro.dev/v6/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/micro/kubernetes/pkg/k8s/httpapi"
	greeterv1 "github.com/micro/kubernetes/proto/greeter/v1"
	"github.com/micro/kubernetes/web/frontend"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	greeterAddr := flag.String("greeter", "127.0.0.1:9090", "the greeter's address")
	flag.Parse()
	cc, err := grpc.NewClient(*greeterAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	srv := httpapi.NewServer()
	srv.Addr = *addr
	srv.Handler = frontend.New(greeter{greeterv1.NewGreeterClient(cc)}, frontend.DefaultGreeterTimeout, nil)
	log.Fatal(srv.ListenAndServe())
}

// greeter is the plain gRPC client in the shape the frontend takes.
type greeter struct{ greeterv1.GreeterClient }

func (g greeter) Hello(ctx context.Context, req *greeterv1.HelloRequest, _ ...client.CallOption) (*greeterv1.HelloResponse, error) {
	return g.GreeterClient.Hello(ctx, req)
}
