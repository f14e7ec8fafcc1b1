package k8s

import (
	"errors"

	merrors "go-micro.dev/v6/errors"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// grpcCodes are the gRPC codes go-micro errors travel as, by their
// HTTP-style code: go-micro's gRPC server's own table (server/grpc/error.go),
// kept once here for both directions. The metrics and logs label an RPC with
// the code its caller sees; the client turns a status back into the go-micro
// error callers expect.
var grpcCodes = map[int32]codes.Code{
	400: codes.InvalidArgument,
	401: codes.Unauthenticated,
	403: codes.PermissionDenied,
	404: codes.NotFound,
	408: codes.DeadlineExceeded,
	409: codes.AlreadyExists,
	412: codes.FailedPrecondition,
	500: codes.Internal,
	501: codes.Unimplemented,
	503: codes.Unavailable,
}

// grpcCode is the code an RPC's error travels as.
func grpcCode(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	var merr *merrors.Error
	if !errors.As(err, &merr) {
		return codes.Unknown
	}
	if c, ok := grpcCodes[merr.Code]; ok {
		return c
	}
	return codes.Unknown
}

// microCode is the go-micro code of a gRPC code: the reverse of grpcCodes,
// with a cancelled call counted as a timeout (the caller gave up), and 500
// for what has no code of its own.
func microCode(c codes.Code) int32 {
	if c == codes.Canceled {
		c = codes.DeadlineExceeded
	}
	for code, g := range grpcCodes {
		if g == c {
			return code
		}
	}
	return 500
}

// microError turns a gRPC status into the go-micro error callers expect:
// the one the server sent (in the status's details), or one by code.
func microError(err error) error {
	if err == nil {
		return nil
	}
	s, ok := status.FromError(err)
	if !ok {
		return merrors.InternalServerError("go.micro.client", "%v", err)
	}
	for _, d := range s.Details() {
		if merr, ok := d.(*merrors.Error); ok {
			return merr
		}
	}
	return merrors.New("go.micro.client", s.Message(), microCode(s.Code()))
}
