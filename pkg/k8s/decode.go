package k8s

import (
	"go-micro.dev/v6/codec/bytes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// refuseUndecodable answers InvalidArgument, not gRPC's default Internal, to a
// protobuf or JSON request that does not decode (malformed bytes, a string that is
// not UTF-8): the caller sent it, the caller must fix it, retrying is futile.
// gRPC writes Internal itself as soon as its codec fails, so the stream takes
// the raw bytes and decodes them here.
func refuseUndecodable(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	// One header, without copying them all (this runs on every request).
	switch ct := metadata.ValueFromIncomingContext(ss.Context(), "content-type"); {
	case len(ct) == 1 && (ct[0] == "application/grpc" || ct[0] == "application/grpc+proto"):
		return handler(srv, checkedStream{ss, proto.Unmarshal})
	case len(ct) == 1 && ct[0] == "application/grpc+json":
		return handler(srv, checkedStream{ss, unmarshalJSON})
	default:
		return handler(srv, ss)
	}
}

// checkedStream decodes requests itself, with the decoder of their codec.
type checkedStream struct {
	grpc.ServerStream
	unmarshal func([]byte, proto.Message) error
}

func (s checkedStream) RecvMsg(m any) error {
	msg, ok := m.(proto.Message)
	if !ok {
		return s.ServerStream.RecvMsg(m)
	}
	// go-micro's codecs hand a *bytes.Frame the undecoded message.
	var raw bytes.Frame
	if err := s.ServerStream.RecvMsg(&raw); err != nil {
		return err
	}
	if err := s.unmarshal(raw.Data, msg); err != nil {
		return status.Errorf(codes.InvalidArgument, "request does not decode as %s: %v", msg.ProtoReflect().Descriptor().FullName(), err)
	}
	return nil
}

// unmarshalJSON decodes as go-micro's JSON codec does (protojson; an empty
// body is an empty request).
func unmarshalJSON(data []byte, m proto.Message) error {
	if len(data) == 0 {
		return nil
	}
	return protojson.Unmarshal(data, m)
}
