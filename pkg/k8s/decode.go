package k8s

import (
	"go-micro.dev/v6/codec/bytes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// refuseUndecodable answers InvalidArgument, not gRPC's default Internal, to a
// protobuf request that does not decode (malformed bytes, a string that is
// not UTF-8): the caller sent it, the caller must fix it, retrying is futile.
// gRPC writes Internal itself as soon as its codec fails, so the stream takes
// the raw bytes and decodes them here.
func refuseUndecodable(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	// One header, without copying them all (this runs on every request).
	switch ct := metadata.ValueFromIncomingContext(ss.Context(), "content-type"); {
	case len(ct) == 1 && (ct[0] == "application/grpc" || ct[0] == "application/grpc+proto"):
		return handler(srv, protoCheckedStream{ss})
	default:
		return handler(srv, ss)
	}
}

type protoCheckedStream struct{ grpc.ServerStream }

func (s protoCheckedStream) RecvMsg(m any) error {
	msg, ok := m.(proto.Message)
	if !ok {
		return s.ServerStream.RecvMsg(m)
	}
	// go-micro's codecs hand a *bytes.Frame the undecoded message.
	var raw bytes.Frame
	if err := s.ServerStream.RecvMsg(&raw); err != nil {
		return err
	}
	if err := proto.Unmarshal(raw.Data, msg); err != nil {
		return status.Errorf(codes.InvalidArgument, "request does not decode as %s: %v", msg.ProtoReflect().Descriptor().FullName(), err)
	}
	return nil
}
