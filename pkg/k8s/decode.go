package k8s

import (
	"go-micro.dev/v6/codec/bytes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// refuseUndecodable answers InvalidArgument, not gRPC's default Internal, to a
// protobuf or JSON request that does not decode (malformed bytes, a string that is
// not UTF-8): the caller sent it, the caller must fix it, retrying is futile.
// gRPC writes Internal itself as soon as its codec fails, so the stream takes
// the raw bytes and decodes them here. (The server's fast path, fastServer, decodes
// its calls the same way itself.)
func refuseUndecodable(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ct, _ := incomingHeader(ss.Context(), "content-type")
	if unmarshal := unmarshalerFor(ct); unmarshal != nil {
		return handler(srv, checkedStream{ss, unmarshal})
	}
	return handler(srv, ss)
}

// unmarshalerFor is the decoder of the codec a content type names, if
// requests in it are decoded here.
func unmarshalerFor(contentType string) func([]byte, proto.Message) error {
	switch contentType {
	case "application/grpc", "application/grpc+proto":
		return proto.Unmarshal
	case "application/grpc+json":
		return unmarshalJSON
	}
	return nil
}

// checkedStream decodes requests itself, with the decoder of their codec.
type checkedStream struct {
	grpc.ServerStream
	unmarshal func([]byte, proto.Message) error
}

func (s checkedStream) RecvMsg(m any) error {
	if msg, ok := m.(proto.Message); ok {
		return receive(s.ServerStream, s.unmarshal, msg)
	}
	return s.ServerStream.RecvMsg(m)
}

// receive reads the next request of ss into m with unmarshal; a request that
// does not decode is InvalidArgument.
func receive(ss grpc.ServerStream, unmarshal func([]byte, proto.Message) error, m proto.Message) error {
	// go-micro's codecs hand a *bytes.Frame the undecoded message.
	var raw bytes.Frame
	if err := ss.RecvMsg(&raw); err != nil {
		return err
	}
	if err := unmarshal(raw.Data, m); err != nil {
		return status.Errorf(codes.InvalidArgument, "request does not decode as %s: %v", m.ProtoReflect().Descriptor().FullName(), err)
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
