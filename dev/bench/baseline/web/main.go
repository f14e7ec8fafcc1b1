// Command web is the benchmarks' baseline frontend: GET /greeter?name=X on a
// plain net/http server, calling the baseline greeter with a plain gRPC
// client. No go-micro.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	greeterv1 "github.com/micro/kubernetes/proto/greeter/v1"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	greeterAddr := flag.String("greeter", "127.0.0.1:9090", "the greeter's address")
	flag.Parse()
	cc, err := grpc.NewClient(*greeterAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	greeter := greeterv1.NewGreeterClient(cc)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /greeter", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		rsp, err := greeter.Hello(ctx, &greeterv1.HelloRequest{Name: r.URL.Query().Get("name")})
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"message": rsp.GetMessage()})
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {})
	log.Fatal(http.ListenAndServe(*addr, mux))
}
