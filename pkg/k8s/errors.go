package k8s

import (
	"context"
	"io"
	"os"
	"strings"

	merrors "go-micro.dev/v6/errors"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

// grpcCodes are the gRPC codes go-micro errors travel as, by their
// HTTP-style code: go-micro's gRPC server's own table (server/grpc/error.go),
// kept once here for both directions. The metrics and logs label an RPC with
// the code its caller sees; the client turns a status back into the go-micro
// error callers expect.
var grpcCodes = map[int32]codes.Code{
	200: codes.OK,
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

// grpcCode is the code an RPC's error travels as (see grpcStatus).
func grpcCode(err error) codes.Code {
	switch e := err.(type) {
	case nil:
		return codes.OK
	case *merrors.Error:
		if c, ok := grpcCodes[e.Code]; ok {
			return c
		}
		return codes.Unknown
	}
	return convertCode(err)
}

// grpcStatus is the status a handler's error travels as, as go-micro's
// server sends it (server/grpc/grpc.go): a go-micro error (or any protobuf
// error) with its code and itself as the detail the go-micro client reads
// back. A go-micro error wrapped in another is a plain error to go-micro.
func grpcStatus(err error) error {
	if merr, ok := err.(*merrors.Error); ok {
		merr.Detail = strings.ToValidUTF8(merr.Detail, "")
		st, serr := status.New(grpcCode(merr), merr.Error()).WithDetails(merr)
		if serr != nil {
			return serr
		}
		return st.Err()
	}
	if pm, ok := err.(proto.Message); ok {
		st, serr := status.New(convertCode(err), err.Error()).WithDetails(protoadapt.MessageV1Of(pm))
		if serr != nil {
			return serr
		}
		return st.Err()
	}
	return status.New(convertCode(err), err.Error()).Err()
}

// convertCode is go-micro's server's code for an error that is not its own
// (server/grpc/util.go).
func convertCode(err error) codes.Code {
	switch err {
	case io.EOF:
		return codes.OutOfRange
	case io.ErrClosedPipe, io.ErrNoProgress, io.ErrShortBuffer, io.ErrShortWrite, io.ErrUnexpectedEOF:
		return codes.FailedPrecondition
	case os.ErrInvalid:
		return codes.InvalidArgument
	case context.Canceled:
		return codes.Canceled
	case context.DeadlineExceeded:
		return codes.DeadlineExceeded
	}
	switch {
	case os.IsExist(err):
		return codes.AlreadyExists
	case os.IsNotExist(err):
		return codes.NotFound
	case os.IsPermission(err):
		return codes.PermissionDenied
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

// microError turns a gRPC status into the go-micro error callers expect,
// as go-micro's client does (client/grpc/error.go): the one the server sent
// in the status's details, or as the status's message (go-micro's server
// sends a router's errors so), or one by code. A detail that is not a
// go-micro error is skipped, where go-micro's client panics.
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
	if merr := merrors.Parse(s.Message()); merr.Code > 0 {
		return merr
	}
	return merrors.New("go.micro.client", s.Message(), microCode(s.Code()))
}
