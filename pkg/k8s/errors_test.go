package k8s

import (
	"testing"

	merrors "go-micro.dev/v6/errors"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Both directions read the one table: a go-micro code travels as a gRPC code
// and comes back as itself, 501 included (200 travels as OK: no error).
func TestCodesRoundTrip(t *testing.T) {
	for micro, grpc := range grpcCodes {
		if got := grpcCode(merrors.New("x", "x", micro)); got != grpc {
			t.Errorf("grpcCode(%d) = %s, want %s", micro, got, grpc)
		}
		if grpc == codes.OK {
			continue
		}
		err := microError(status.Error(grpc, "x"))
		if got := merrors.FromError(err).Code; got != micro {
			t.Errorf("%s came back as %d, want %d", grpc, got, micro)
		}
	}
	if got := microCode(codes.Canceled); got != 408 {
		t.Errorf("Canceled = %d, want 408", got)
	}
	if got := microCode(codes.DataLoss); got != 500 {
		t.Errorf("DataLoss = %d, want 500", got)
	}
	if got := grpcCode(merrors.New("x", "x", 418)); got != codes.Unknown {
		t.Errorf("grpcCode(418) = %s, want Unknown", got)
	}
}
