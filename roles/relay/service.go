package relay

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sipmesh/sipmesh/overlay/rpc"
	"github.com/sipmesh/sipmesh/roles/relay/relaypb"
)

// errorDomain is the ErrorInfo domain of the relay's refusals.
const errorDomain = "relay.sipmesh"

// Reasons in ErrorInfo, one per sentinel error.
var reasons = []struct {
	err    error
	code   codes.Code
	reason string
}{
	{ErrCapacity, codes.ResourceExhausted, "CAPACITY"},
	{ErrPortsExhausted, codes.ResourceExhausted, "PORTS_EXHAUSTED"},
	{ErrUnsupported, codes.FailedPrecondition, "UNSUPPORTED"},
	{ErrNotFound, codes.NotFound, "NOT_FOUND"},
	{ErrInvalid, codes.InvalidArgument, "INVALID"},
	{ErrClosed, codes.Unavailable, "CLOSED"},
}

// Service serves a Relay's control API (relaypb.Relay) on the overlay RPC.
type Service struct {
	relaypb.UnimplementedRelayServer
	r *Relay
}

// NewService returns the service of r.
func NewService(r *Relay) *Service { return &Service{r: r} }

// Register registers the service on a server (an *rpc.Server); call it
// before the server serves.
func (s *Service) Register(reg grpc.ServiceRegistrar) { relaypb.RegisterRelayServer(reg, s) }

// Allocate implements relaypb.RelayServer; the session's owner is the
// calling node.
func (s *Service) Allocate(ctx context.Context, req *relaypb.AllocateRequest) (*relaypb.Allocation, error) {
	specs, err := specsFromPB(req.GetStreams())
	if err != nil {
		return nil, toStatus(err)
	}
	owner, _ := rpc.PeerName(ctx)
	al, err := s.r.Allocate(ctx, AllocateRequest{CallID: req.GetCallId(), Owner: owner, Streams: specs})
	if err != nil {
		return nil, toStatus(err)
	}
	return allocationToPB(al), nil
}

// Update implements relaypb.RelayServer.
func (s *Service) Update(ctx context.Context, req *relaypb.UpdateRequest) (*relaypb.Allocation, error) {
	specs, err := specsFromPB(req.GetStreams())
	if err != nil {
		return nil, toStatus(err)
	}
	al, err := s.r.Update(ctx, UpdateRequest{CallID: req.GetCallId(), Streams: specs, Relatch: req.GetRelatch()})
	if err != nil {
		return nil, toStatus(err)
	}
	return allocationToPB(al), nil
}

// Free implements relaypb.RelayServer.
func (s *Service) Free(ctx context.Context, req *relaypb.FreeRequest) (*relaypb.Session, error) {
	info, err := s.r.Free(ctx, req.GetCallId())
	if err != nil {
		return nil, toStatus(err)
	}
	return sessionToPB(info), nil
}

// List implements relaypb.RelayServer.
func (s *Service) List(ctx context.Context, _ *relaypb.ListRequest) (*relaypb.ListResponse, error) {
	all, err := s.r.Sessions(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &relaypb.ListResponse{Sessions: make([]*relaypb.Session, len(all))}
	for i, si := range all {
		resp.Sessions[i] = sessionToPB(si)
	}
	return resp, nil
}

// Watch implements relaypb.RelayServer: it streams the sessions owned by
// the calling node that the relay frees on its own. Events that the
// caller does not read fast enough are dropped after a bounded queue (the
// caller also learns of a lost session from Update or Free failing with
// ErrNotFound).
func (s *Service) Watch(_ *relaypb.WatchRequest, stream grpc.ServerStreamingServer[relaypb.Event]) error {
	owner, _ := rpc.PeerName(stream.Context())
	ch := make(chan SessionInfo, 256)
	cancel := s.r.Watch(func(si SessionInfo) {
		if si.Owner != owner {
			return
		}
		select {
		case ch <- si:
		default:
		}
	})
	defer cancel()
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case si := <-ch:
			if err := stream.Send(&relaypb.Event{Session: sessionToPB(si)}); err != nil {
				return err
			}
		}
	}
}

// toStatus carries a relay error over gRPC with its reason.
func toStatus(err error) error {
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			st := status.New(r.code, err.Error())
			if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: r.reason, Domain: errorDomain}); derr == nil {
				st = d
			}
			return st.Err()
		}
	}
	return status.Error(codes.Internal, err.Error())
}

// fromStatus turns a gRPC error of the relay service back into an error
// that wraps the matching sentinel.
func fromStatus(node, op string, err error) error {
	st, ok := status.FromError(err)
	if ok {
		for _, d := range st.Details() {
			info, isInfo := d.(*errdetails.ErrorInfo)
			if !isInfo || info.GetDomain() != errorDomain {
				continue
			}
			for _, r := range reasons {
				if r.reason == info.GetReason() {
					return fmt.Errorf("relay: %s on node %s: %w (%s)", op, node, r.err, st.Message())
				}
			}
		}
	}
	return fmt.Errorf("relay: %s on node %s: %w", op, node, err)
}

func addrString(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func parseAddr(s string) (netip.AddrPort, error) {
	if s == "" {
		return netip.AddrPort{}, nil
	}
	a, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("relay: address %q: %w", s, ErrInvalid)
	}
	return a, nil
}

func peerToPB(p Peer) *relaypb.Peer {
	return &relaypb.Peer{Rtp: addrString(p.RTP), Rtcp: addrString(p.RTCP), Family: p.Family}
}

func peerFromPB(p *relaypb.Peer) (Peer, error) {
	rtpAddr, err := parseAddr(p.GetRtp())
	if err != nil {
		return Peer{}, err
	}
	rtcpAddr, err := parseAddr(p.GetRtcp())
	if err != nil {
		return Peer{}, err
	}
	return Peer{RTP: rtpAddr, RTCP: rtcpAddr, Family: p.GetFamily()}, nil
}

func specsToPB(specs []StreamSpec) []*relaypb.StreamSpec {
	out := make([]*relaypb.StreamSpec, len(specs))
	for i, s := range specs {
		out[i] = &relaypb.StreamSpec{A: peerToPB(s.A), B: peerToPB(s.B)}
	}
	return out
}

func specsFromPB(in []*relaypb.StreamSpec) ([]StreamSpec, error) {
	out := make([]StreamSpec, len(in))
	for i, s := range in {
		a, err := peerFromPB(s.GetA())
		if err != nil {
			return nil, err
		}
		b, err := peerFromPB(s.GetB())
		if err != nil {
			return nil, err
		}
		out[i] = StreamSpec{A: a, B: b}
	}
	return out, nil
}

func endpointToPB(e Endpoint) *relaypb.Endpoint {
	return &relaypb.Endpoint{Rtp: addrString(e.RTP), Rtcp: addrString(e.RTCP)}
}

func endpointFromPB(e *relaypb.Endpoint) (Endpoint, error) {
	rtpAddr, err := parseAddr(e.GetRtp())
	if err != nil {
		return Endpoint{}, err
	}
	rtcpAddr, err := parseAddr(e.GetRtcp())
	if err != nil {
		return Endpoint{}, err
	}
	return Endpoint{RTP: rtpAddr, RTCP: rtcpAddr}, nil
}

func allocationToPB(al Allocation) *relaypb.Allocation {
	out := &relaypb.Allocation{CallId: al.CallID, Streams: make([]*relaypb.StreamAllocation, len(al.Streams))}
	for i, s := range al.Streams {
		out.Streams[i] = &relaypb.StreamAllocation{A: endpointToPB(s.A), B: endpointToPB(s.B)}
	}
	return out
}

func allocationFromPB(in *relaypb.Allocation) (Allocation, error) {
	al := Allocation{CallID: in.GetCallId(), Streams: make([]StreamAllocation, len(in.GetStreams()))}
	for i, s := range in.GetStreams() {
		a, err := endpointFromPB(s.GetA())
		if err != nil {
			return Allocation{}, err
		}
		b, err := endpointFromPB(s.GetB())
		if err != nil {
			return Allocation{}, err
		}
		al.Streams[i] = StreamAllocation{A: a, B: b}
	}
	return al, nil
}

func legToPB(l LegInfo) *relaypb.LegCounters {
	return &relaypb.LegCounters{
		Relay: addrString(l.Relay), RelayRtcp: addrString(l.RelayRTCP),
		Peer: addrString(l.Peer), PeerRtcp: addrString(l.PeerRTCP), Advertised: addrString(l.Advertised),
		Packets: l.Packets, Bytes: l.Bytes, RtcpPackets: l.RTCPPackets, RtcpBytes: l.RTCPBytes,
		Dropped: l.Dropped, Lost: l.Lost, Expected: l.Expected,
	}
}

func legFromPB(l *relaypb.LegCounters) LegInfo {
	p := func(s string) netip.AddrPort { a, _ := parseAddr(s); return a }
	return LegInfo{
		Relay: p(l.GetRelay()), RelayRTCP: p(l.GetRelayRtcp()),
		Peer: p(l.GetPeer()), PeerRTCP: p(l.GetPeerRtcp()), Advertised: p(l.GetAdvertised()),
		Packets: l.GetPackets(), Bytes: l.GetBytes(), RTCPPackets: l.GetRtcpPackets(), RTCPBytes: l.GetRtcpBytes(),
		Dropped: l.GetDropped(), Lost: l.GetLost(), Expected: l.GetExpected(),
	}
}

func sessionToPB(si SessionInfo) *relaypb.Session {
	out := &relaypb.Session{
		CallId: si.CallID, Owner: si.Owner, Freed: si.Freed,
		CreatedUnixNano:      si.Created.UnixNano(),
		LastActivityUnixNano: si.LastActivity.UnixNano(),
		Streams:              make([]*relaypb.StreamCounters, len(si.Streams)),
	}
	for i, s := range si.Streams {
		out.Streams[i] = &relaypb.StreamCounters{A: legToPB(s.A), B: legToPB(s.B)}
	}
	return out
}

func sessionFromPB(in *relaypb.Session, now time.Time) SessionInfo {
	si := SessionInfo{
		CallID: in.GetCallId(), Owner: in.GetOwner(), Freed: in.GetFreed(),
		Created:      time.Unix(0, in.GetCreatedUnixNano()),
		LastActivity: time.Unix(0, in.GetLastActivityUnixNano()),
		Streams:      make([]StreamInfo, len(in.GetStreams())),
	}
	si.IdleSeconds = max(0, now.Sub(si.LastActivity).Seconds())
	for i, s := range in.GetStreams() {
		si.Streams[i] = StreamInfo{A: legFromPB(s.GetA()), B: legFromPB(s.GetB())}
	}
	return si
}
