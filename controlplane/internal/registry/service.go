package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/meshlet/meshlet/internal/registrypb"
)

// WaitFunc blocks until every xDS client subscribed to endpoints has
// acknowledged the endpoints now being served, or ctx ends. It reports
// whether all of them did.
type WaitFunc func(ctx context.Context) bool

// AdmitFunc decides whether the peer of ctx may register inst, and
// completes it: the proven identity, the service account, and the labels
// the operator's config imposes. Its error is a gRPC status.
type AdmitFunc func(ctx context.Context, inst *Instance) error

// MaxWeight bounds a registered instance's weight, so that no sum of
// weights in a ClusterLoadAssignment can overflow (Envoy caps the sum of
// a locality's weights at 2^32-1).
const MaxWeight = 1 << 16

// Service implements the Registry gRPC service over a Registry.
type Service struct {
	pb.UnimplementedRegistryServer

	reg        *Registry
	wait       WaitFunc
	admit      AdmitFunc
	limit      int
	ackTimeout time.Duration
	log        *slog.Logger
	refused    func(reason string)

	handlers   sync.WaitGroup // Register calls in progress
	mu         sync.Mutex
	stopping   bool
	registered int // streams whose instance is registered
}

// NewService serves registrations into reg. admit checks each one; limit
// bounds the registrations of one identity (0: no bound). After an
// instance asks to drain, it waits up to ackTimeout for wait (callers'
// ACKs of endpoints without it) before it answers drained. refused, if
// not nil, is called with the reason of every refused registration (see
// RefusalReason), for metrics; it must not block.
func NewService(reg *Registry, wait WaitFunc, admit AdmitFunc, limit int, ackTimeout time.Duration, log *slog.Logger, refused func(reason string)) *Service {
	if refused == nil {
		refused = func(string) {}
	}
	return &Service{reg: reg, wait: wait, admit: admit, limit: limit, ackTimeout: ackTimeout, log: log, refused: refused}
}

// The reasons a registration is refused, as metrics label them.
const (
	RefusedStopping        = "stopping"        // the control plane is stopping
	RefusedInvalid         = "invalid"         // a malformed instance
	RefusedUnauthenticated = "unauthenticated" // no proven identity
	RefusedNotPermitted    = "not_permitted"   // the identity may not register it there
	RefusedIDTaken         = "id_taken"        // ErrIDTaken
	RefusedAddressTaken    = "address_taken"   // ErrAddressTaken
	RefusedLimit           = "limit"           // ErrTooMany
)

// admitReason is the refusal reason of an AdmitFunc's error.
func admitReason(err error) string {
	switch status.Code(err) {
	case codes.Unauthenticated:
		return RefusedUnauthenticated
	case codes.InvalidArgument:
		return RefusedInvalid
	default:
		return RefusedNotPermitted
	}
}

// upsertReason is the refusal reason of an Upsert error.
func upsertReason(err error) string {
	switch {
	case errors.Is(err, ErrIDTaken):
		return RefusedIDTaken
	case errors.Is(err, ErrAddressTaken):
		return RefusedAddressTaken
	default:
		return RefusedLimit
	}
}

// Stop says that the control plane is stopping: the registration
// streams that end from now on end because of that, not because their
// servers went away, so they are not logged as lost; new ones are
// refused. It returns how many registered instances have a stream open.
func (s *Service) Stop() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopping = true
	return s.registered
}

// Wait blocks until every Register call has returned. Call it after Stop,
// once the gRPC server has ended the streams.
func (s *Service) Wait() { s.handlers.Wait() }

func (s *Service) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// Register implements pb.RegistryServer.
func (s *Service) Register(stream pb.Registry_RegisterServer) error {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		s.refused(RefusedStopping)
		return status.Error(codes.Unavailable, "registry: the control plane is stopping; register again when it is back")
	}
	s.handlers.Add(1)
	s.mu.Unlock()
	defer s.handlers.Done()

	first, err := stream.Recv()
	if err != nil {
		return err
	}
	inst, err := instanceFromProto(first.GetInstance())
	if err != nil {
		s.refused(RefusedInvalid)
		return status.Errorf(codes.InvalidArgument, "registry: %v", err)
	}
	if err := s.admit(stream.Context(), &inst); err != nil {
		s.refused(admitReason(err))
		s.log.Warn("registration refused", "id", inst.ID, "service", inst.Service, "namespace", inst.Namespace,
			"address", fmt.Sprintf("%s:%d", inst.Address, inst.Port), "err", err)
		return err
	}
	gen, err := s.reg.Upsert(inst, stateFromProto(first.GetState()), s.limit)
	if err != nil {
		code := codes.PermissionDenied
		if errors.Is(err, ErrTooMany) {
			code = codes.ResourceExhausted
		}
		s.refused(upsertReason(err))
		s.log.Warn("registration refused", "id", inst.ID, "service", inst.Service, "identity", inst.Identity, "err", err)
		return status.Errorf(code, "registry: instance %s of %s.%s at %s:%d: %v", inst.ID, inst.Service, inst.Namespace, inst.Address, inst.Port, err)
	}
	s.mu.Lock()
	s.registered++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.registered--
		s.mu.Unlock()
	}()
	s.log.Info("instance registered", "id", inst.ID, "service", inst.Service, "namespace", inst.Namespace,
		"address", fmt.Sprintf("%s:%d", inst.Address, inst.Port), "state", first.GetState().String())
	if err := stream.Send(&pb.RegisterResponse{State: first.GetState()}); err != nil {
		return s.lost(inst, gen, err)
	}
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			s.reg.Remove(inst.ID, gen)
			s.log.Info("instance deregistered", "id", inst.ID, "service", inst.Service)
			return nil
		}
		if err != nil {
			return s.lost(inst, gen, err)
		}
		st := stateFromProto(req.GetState())
		s.reg.SetState(inst.ID, gen, st)
		resp := &pb.RegisterResponse{State: req.GetState()}
		if st == Draining {
			ctx, cancel := context.WithTimeout(stream.Context(), s.ackTimeout)
			resp.AckedByAll = s.wait(ctx)
			cancel()
			resp.Drained = true
			s.log.Info("instance drained", "id", inst.ID, "service", inst.Service, "ackedByAll", resp.AckedByAll)
		}
		if err := stream.Send(resp); err != nil {
			return s.lost(inst, gen, err)
		}
	}
}

// lost handles the end of a registration stream that was not a clean
// deregistration, and returns err.
func (s *Service) lost(inst Instance, gen uint64, err error) error {
	if s.isStopping() {
		// Stop said so once for every stream; the registry goes too.
		s.log.Debug("registration ends: the control plane is stopping", "id", inst.ID, "service", inst.Service)
		return err
	}
	s.reg.Lost(inst.ID, gen)
	s.log.Warn("instance connection lost; removing it after the grace period", "id", inst.ID, "service", inst.Service, "err", err)
	return err
}

func stateFromProto(s pb.State) State {
	switch s {
	case pb.State_SERVING:
		return Serving
	case pb.State_DRAINING:
		return Draining
	default:
		return NotServing
	}
}

func instanceFromProto(p *pb.Instance) (Instance, error) {
	if p == nil {
		return Instance{}, errors.New("the first request must carry the instance")
	}
	var missing []string
	for name, v := range map[string]string{"id": p.GetId(), "service": p.GetService(), "namespace": p.GetNamespace(), "address": p.GetAddress()} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return Instance{}, fmt.Errorf("instance is missing %s", strings.Join(missing, ", "))
	}
	addr, err := netip.ParseAddr(p.GetAddress())
	if err != nil {
		return Instance{}, fmt.Errorf("instance address %q is not an IP address", p.GetAddress())
	}
	if p.GetPort() == 0 || p.GetPort() > 65535 || p.GetServicePort() > 65535 {
		return Instance{}, fmt.Errorf("instance port %d or service port %d is out of range", p.GetPort(), p.GetServicePort())
	}
	if p.GetWeight() > MaxWeight {
		return Instance{}, fmt.Errorf("instance weight %d is over the maximum, %d", p.GetWeight(), MaxWeight)
	}
	var listen string
	if la := p.GetListenAddress(); la != "" {
		ip, err := netip.ParseAddr(la)
		if err != nil {
			return Instance{}, fmt.Errorf("instance listen address %q is not an IP address", la)
		}
		listen = ip.String()
	}
	proto := strings.ToUpper(p.GetProtocol())
	switch proto {
	case "":
		proto = "GRPC"
	case "GRPC", "HTTP", "HTTP2":
	default:
		return Instance{}, fmt.Errorf("instance protocol %q is not GRPC, HTTP or HTTP2", p.GetProtocol())
	}
	inst := Instance{
		ID:             p.GetId(),
		Service:        p.GetService(),
		Namespace:      p.GetNamespace(),
		ServiceAccount: p.GetServiceAccount(),
		Address:        addr.String(),
		Port:           p.GetPort(),
		ServicePort:    p.GetServicePort(),
		Protocol:       proto,
		Labels:         p.GetLabels(),
		Weight:         p.GetWeight(),
		ListenAddress:  listen,
	}
	if inst.ServicePort == 0 {
		inst.ServicePort = inst.Port
	}
	if l := p.GetLocality(); l != nil {
		inst.Locality = Locality{Region: l.GetRegion(), Zone: l.GetZone(), SubZone: l.GetSubZone()}
	}
	return inst, nil
}
