package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/goccy/go-json"
	"github.com/hydrogen-mq/hydrogen/netpoll"
	"github.com/hydrogen-mq/hydrogen/telemetry"
)

// Identity is who an authenticated stream is, and what it may do.
type Identity struct {
	// Name identifies the client: a token's name, a JWT's subject, a
	// client certificate's subject.
	Name string
	// Publish says whether the identity may publish: send frames that
	// reach other streams. The built-in applications refuse the frames
	// of an identity that may not, with an error frame.
	Publish bool
	// Groups are the groups (topics, rooms) the identity may use; nil
	// means any.
	Groups []string
}

// MayPublish reports whether id may publish. A nil Identity (a broker
// without authentication) may.
func (id *Identity) MayPublish() bool { return id == nil || id.Publish }

// MayUse reports whether id may use group. A nil Identity, or one with no
// list of groups, may use any.
func (id *Identity) MayUse(group string) bool {
	return id == nil || id.Groups == nil || slices.Contains(id.Groups, group)
}

// An Authenticator decides who a stream is from its credential: the
// payload of the first frame the stream sends. It returns the identity,
// or an error whose text is sent to the client (keep it free of secrets)
// and the stream closed. It runs on a pool of goroutines apart from the
// event loops, so it may block (a lookup in a database, say) until ctx
// ends, which it does at the broker's authentication timeout.
type Authenticator interface {
	Authenticate(ctx context.Context, remote net.Addr, credential []byte) (*Identity, error)
}

// AuthenticatorFunc is a function that is an Authenticator.
type AuthenticatorFunc func(ctx context.Context, remote net.Addr, credential []byte) (*Identity, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(ctx context.Context, remote net.Addr, credential []byte) (*Identity, error) {
	return f(ctx, remote, credential)
}

// authFailure is the close reason of a refused credential.
func authFailure(err error) error {
	return fmt.Errorf("%w: %w: %w", netpoll.ErrHandshake, ErrAuth, err)
}

// authAccepted is the frame that answers an accepted credential.
func authAccepted(id *Identity) []byte {
	b, err := json.Marshal(struct {
		Auth     string `json:"auth"`
		Identity string `json:"identity"`
	}{"ok", id.Name})
	if err != nil {
		return []byte(`{"auth":"ok"}`)
	}
	return b
}

// Bounds of the authentication pool: how many credentials are checked at
// once, and how many may wait for a worker. Past the queue a credential
// is refused at once ("busy"), so a storm of connections costs bounded
// memory; the authentication timeout bounds each wait.
const (
	authWorkers = 64
	authQueue   = 4096
)

// authJob is a credential to check, and where to send the verdict.
type authJob struct {
	s          *Stream
	credential []byte
	deadline   time.Time
}

// authDone is the verdict, sent to the stream's connection actor.
type authDone struct {
	id  *Identity
	err error
}

// authPool runs the Authenticator on a few long-lived goroutines fed
// from a bounded queue.
type authPool struct {
	rt   *actorRuntime
	auth Authenticator
	jobs chan authJob
	quit chan struct{}
	wg   sync.WaitGroup
}

func newAuthPool(rt *actorRuntime, a Authenticator) *authPool {
	p := &authPool{rt: rt, auth: a, jobs: make(chan authJob, authQueue), quit: make(chan struct{})}
	for range authWorkers {
		p.wg.Go(p.work)
	}
	return p
}

// submit queues a credential; false when the queue is full.
func (p *authPool) submit(j authJob) bool {
	select {
	case p.jobs <- j:
		return true
	default:
		return false
	}
}

func (p *authPool) work() {
	for {
		select {
		case <-p.quit:
			return
		case j := <-p.jobs:
			p.check(j)
		}
	}
}

func (p *authPool) check(j authJob) {
	ctx, cancel := context.WithDeadline(context.Background(), j.deadline)
	defer cancel()
	id, err := p.authenticate(ctx, j)
	if err == nil && (id == nil || id.Name == "") {
		err = errors.New("the authenticator returned no identity")
	}
	p.rt.system.Root.Send(j.s.connPID, &authDone{id: id, err: err})
}

// authenticate calls the Authenticator, turning a panic in it into a
// refusal rather than the end of the process.
func (p *authPool) authenticate(ctx context.Context, j authJob) (id *Identity, err error) {
	defer func() {
		if r := recover(); r != nil {
			p.rt.log.Error("the authenticator panicked; refusing the credential", "remote", j.s.RemoteAddr().String(), "panic", fmt.Sprint(r))
			id, err = nil, errors.New("internal error")
		}
	}()
	return p.auth.Authenticate(ctx, j.s.RemoteAddr(), j.credential)
}

func (p *authPool) stop() {
	close(p.quit)
	p.wg.Wait()
}

// refuseAuth answers a refused credential and closes the stream.
func (r *actorRuntime) refuseAuth(s *Stream, err error) {
	r.authFailures.Add(1)
	if ok, dropped := r.authLog.Allow(); ok {
		r.log.Warn("authentication refused", "remote", s.RemoteAddr().String(), "stream", s.ID(), "err", err.Error(), "suppressed", dropped)
	}
	_ = s.conn.Send(telemetry.ErrorReply("auth: " + err.Error()))
	s.conn.Close(authFailure(err))
}
