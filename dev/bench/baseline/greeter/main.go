// Command greeter is the benchmarks' baseline greeter: the same Hello, with
// the same validation, on a plain google.golang.org/grpc server. No go-micro.
package main

import (
	"context"
	"flag"
	"log"
	"net"

	"go-micro.dev/v6/errors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	greeterv1 "github.com/micro/kubernetes/proto/greeter/v1"
	"github.com/micro/kubernetes/services/greeter/handler"
)

type server struct {
	greeterv1.UnimplementedGreeterServer
}

func (server) Hello(ctx context.Context, req *greeterv1.HelloRequest) (*greeterv1.HelloResponse, error) {
	rsp := new(greeterv1.HelloResponse)
	if err := (handler.Greeter{}).Hello(ctx, req, rsp); err != nil {
		return nil, status.Error(codes.InvalidArgument, errors.FromError(err).Detail)
	}
	return rsp, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	s := grpc.NewServer()
	greeterv1.RegisterGreeterServer(s, server{})
	healthpb.RegisterHealthServer(s, health.NewServer())
	log.Fatal(s.Serve(l))
}
