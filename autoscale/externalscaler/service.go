package externalscaler

import (
	"context"

	"google.golang.org/grpc"
)

// The gRPC binding of the ExternalScaler service, written by hand in the
// shape protoc-gen-go-grpc makes (that plugin is not packaged here): the
// service description the server registers and a client for tests and
// tools.

const serviceName = "externalscaler.ExternalScaler"

// ExternalScalerServer is what a KEDA external scaler implements.
type ExternalScalerServer interface {
	IsActive(context.Context, *ScaledObjectRef) (*IsActiveResponse, error)
	StreamIsActive(*ScaledObjectRef, grpc.ServerStreamingServer[IsActiveResponse]) error
	GetMetricSpec(context.Context, *ScaledObjectRef) (*GetMetricSpecResponse, error)
	GetMetrics(context.Context, *GetMetricsRequest) (*GetMetricsResponse, error)
}

// RegisterExternalScalerServer registers srv with s.
func RegisterExternalScalerServer(s grpc.ServiceRegistrar, srv ExternalScalerServer) {
	s.RegisterService(&serviceDesc, srv)
}

// unary adapts one unary method of ExternalScalerServer to grpc's handler.
func unary[Req any, Resp any](method string, call func(ExternalScalerServer, context.Context, *Req) (*Resp, error)) grpc.MethodDesc {
	return grpc.MethodDesc{
		MethodName: method,
		Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			in := new(Req)
			if err := dec(in); err != nil {
				return nil, err
			}
			if icpt == nil {
				return call(srv.(ExternalScalerServer), ctx, in)
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + serviceName + "/" + method}
			return icpt(ctx, in, info, func(ctx context.Context, req any) (any, error) {
				return call(srv.(ExternalScalerServer), ctx, req.(*Req))
			})
		},
	}
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: serviceName,
	HandlerType: (*ExternalScalerServer)(nil),
	Methods: []grpc.MethodDesc{
		unary("IsActive", ExternalScalerServer.IsActive),
		unary("GetMetricSpec", ExternalScalerServer.GetMetricSpec),
		unary("GetMetrics", ExternalScalerServer.GetMetrics),
	},
	Streams: []grpc.StreamDesc{{
		StreamName:    "StreamIsActive",
		ServerStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error {
			in := new(ScaledObjectRef)
			if err := stream.RecvMsg(in); err != nil {
				return err
			}
			return srv.(ExternalScalerServer).StreamIsActive(in, &grpc.GenericServerStream[ScaledObjectRef, IsActiveResponse]{ServerStream: stream})
		},
	}},
	Metadata: "externalscaler.proto",
}

// Client calls an ExternalScaler service, as KEDA does.
type Client struct{ cc grpc.ClientConnInterface }

// NewClient returns a client over cc.
func NewClient(cc grpc.ClientConnInterface) *Client { return &Client{cc} }

func (c *Client) IsActive(ctx context.Context, in *ScaledObjectRef, opts ...grpc.CallOption) (*IsActiveResponse, error) {
	out := new(IsActiveResponse)
	return out, c.cc.Invoke(ctx, "/"+serviceName+"/IsActive", in, out, opts...)
}

func (c *Client) GetMetricSpec(ctx context.Context, in *ScaledObjectRef, opts ...grpc.CallOption) (*GetMetricSpecResponse, error) {
	out := new(GetMetricSpecResponse)
	return out, c.cc.Invoke(ctx, "/"+serviceName+"/GetMetricSpec", in, out, opts...)
}

func (c *Client) GetMetrics(ctx context.Context, in *GetMetricsRequest, opts ...grpc.CallOption) (*GetMetricsResponse, error) {
	out := new(GetMetricsResponse)
	return out, c.cc.Invoke(ctx, "/"+serviceName+"/GetMetrics", in, out, opts...)
}

// StreamIsActive opens the stream of activity changes.
func (c *Client) StreamIsActive(ctx context.Context, in *ScaledObjectRef, opts ...grpc.CallOption) (grpc.ServerStreamingClient[IsActiveResponse], error) {
	s, err := c.cc.NewStream(ctx, &serviceDesc.Streams[0], "/"+serviceName+"/StreamIsActive", opts...)
	if err != nil {
		return nil, err
	}
	x := &grpc.GenericClientStream[ScaledObjectRef, IsActiveResponse]{ClientStream: s}
	if err := x.ClientStream.SendMsg(in); err != nil {
		return nil, err
	}
	if err := x.ClientStream.CloseSend(); err != nil {
		return nil, err
	}
	return x, nil
}
