package broker_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/golang-jwt/jwt/v5"
	"github.com/hydrogen-mq/hydrogen/broker"
	"github.com/hydrogen-mq/hydrogen/wire"
)

const (
	aliceToken = "alice-token-0123456789abcdef"
	bobToken   = "bob-token-0123456789abcdef"
)

// writeFile writes content to a file of the test's and returns its path.
func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func tokens(t testing.TB, content string) *broker.Tokens {
	t.Helper()
	tk, err := broker.NewTokens(writeFile(t, "tokens", content))
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// recorder is an application that records, per stream, what it hears,
// and echoes every frame.
type recorder struct {
	mu   sync.Mutex
	seen []string // "connected <identity>", "<payload>", "closed"
}

func (r *recorder) props() *actor.Props {
	return actor.PropsFromFunc(func(ctx actor.Context) {
		r.mu.Lock()
		defer r.mu.Unlock()
		switch m := ctx.Message().(type) {
		case *broker.Connected:
			name := "<none>"
			if id := m.Stream.Identity(); id != nil {
				name = id.Name
			}
			r.seen = append(r.seen, "connected "+name)
		case *broker.Received:
			r.seen = append(r.seen, string(m.Payload))
			_ = m.Stream.Send(m.Payload)
		case *broker.Closed:
			r.seen = append(r.seen, "closed")
		}
	})
}

func (r *recorder) events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

func authBroker(t testing.TB, a broker.Authenticator, timeout time.Duration) (*broker.Broker, *recorder) {
	rec := &recorder{}
	b := start(t, broker.Config{Authenticator: a, AuthTimeout: timeout}, rec.props(), true)
	return b, rec
}

// TestAuthAcceptedThenServed: the first frame is the credential; the
// broker's first frame answers it; only then does the application hear of
// the stream, with its identity, and frames sent right behind the
// credential (in the same write) are served in order.
func TestAuthAcceptedThenServed(t *testing.T) {
	b, rec := authBroker(t, tokens(t, aliceToken+" alice\n"+bobToken+" bob publish=false\n"), 0)
	p := dial(t, b)
	p.send([]byte(aliceToken), []byte("one"), []byte("two"))
	if got := string(p.next(5 * time.Second)); got != `{"auth":"ok","identity":"alice"}` {
		t.Fatalf("first frame %q, want the acceptance", got)
	}
	for _, want := range []string{"one", "two"} {
		if got := string(p.next(5 * time.Second)); got != want {
			t.Fatalf("echo %q, want %q", got, want)
		}
	}
	if ev := rec.events(); strings.Join(ev, "|") != "connected alice|one|two" {
		t.Errorf("the application heard %q", ev)
	}
	if st := b.Stats(); st.Actors.AuthFailures != 0 {
		t.Errorf("AuthFailures %d", st.Actors.AuthFailures)
	}
}

// TestAuthRefusals: each bad credential gets one error frame and the
// close; none of the stream's frames, the ones sent behind the credential
// included, reaches the application or the telemetry actor; every refusal
// is counted.
func TestAuthRefusals(t *testing.T) {
	b, rec := authBroker(t, tokens(t, aliceToken+" alice\n"), 0)
	cases := []struct {
		name string
		cred []byte
	}{
		{"wrong token", []byte("not-the-token-0123456789")},
		{"empty", nil},
		{"garbage", []byte{0, 1, 0x17, 0xff, 0x0d}},
		{"the largest frame", make([]byte, wire.MaxPayload)},
		{"a telemetry request", wire.AppendTelemetryRequest(nil, 0.1)},
		{"a prefix of the token", []byte(aliceToken[:20])},
		{"the token and more", []byte(aliceToken + "x")},
	}
	for i, c := range cases {
		p := dial(t, b)
		p.send(c.cred, []byte("must not arrive"), wire.AppendTelemetryRequest(nil, 0.01))
		got := string(p.next(5 * time.Second))
		if got != `{"error":"auth: credential refused"}` {
			t.Errorf("%s: answer %q", c.name, got)
		}
		p.expectEOF(5 * time.Second)
		waitFor(t, "the refusal counted", 5*time.Second, func() bool { return b.Stats().Actors.AuthFailures == uint64(i+1) })
	}
	if ev := rec.events(); len(ev) != 0 {
		t.Errorf("the application heard %q", ev)
	}
	// The client may see the end before the loop has counted the close.
	waitFor(t, "every close counted", 5*time.Second, func() bool { return b.Stats().IO.Open == 0 })
	if st := b.Stats(); st.Actors.TelemetryRequests != 0 || st.IO.ClosedHandshake != uint64(len(cases)) {
		t.Errorf("telemetry requests %d, closed for the handshake %d; want 0, %d", st.Actors.TelemetryRequests, st.IO.ClosedHandshake, len(cases))
	}
}

// TestAuthSplitAtEveryByte: a credential frame that arrives one byte at a
// time is taken whole.
func TestAuthSplitAtEveryByte(t *testing.T) {
	b, _ := authBroker(t, tokens(t, aliceToken+" alice\n"), 0)
	p := dial(t, b)
	f, _ := wire.Encode([]byte(aliceToken))
	for i := range f {
		p.writeRaw(f[i : i+1])
		time.Sleep(time.Millisecond) // separate reads, most likely; correctness does not depend on it
	}
	if got := string(p.next(5 * time.Second)); got != `{"auth":"ok","identity":"alice"}` {
		t.Fatalf("answer %q", got)
	}
}

// TestAuthTimeout: a stream that sends no credential, or half of one, is
// closed at the authentication timeout, counted as a handshake close.
func TestAuthTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	b, rec := authBroker(t, tokens(t, aliceToken+" alice\n"), timeout)
	silent := dial(t, b)
	half := dial(t, b)
	f, _ := wire.Encode([]byte(aliceToken))
	half.writeRaw(f[:5])
	start := time.Now()
	silent.expectEOF(5 * time.Second)
	half.expectEOF(5 * time.Second)
	if d := time.Since(start); d < timeout || d > 2*timeout+250*time.Millisecond {
		t.Errorf("closed after %v, want about %v", d, timeout)
	}
	// The client may see the end before the loop has counted the close.
	waitFor(t, "every close counted", 5*time.Second, func() bool { return b.Stats().IO.Open == 0 })
	if st := b.Stats(); st.IO.ClosedHandshake != 2 {
		t.Errorf("closed for the handshake %d, want 2", st.IO.ClosedHandshake)
	}
	if ev := rec.events(); len(ev) != 0 {
		t.Errorf("the application heard %q", ev)
	}
}

// TestTokensReload: a reloaded token file takes effect for new streams;
// a stream authenticated before keeps its identity and its service.
func TestTokensReload(t *testing.T) {
	path := writeFile(t, "tokens", aliceToken+" alice\n")
	tk, err := broker.NewTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := authBroker(t, tk, 0)
	alice := dial(t, b)
	alice.send([]byte(aliceToken))
	alice.next(5 * time.Second)

	if err := os.WriteFile(path, []byte(bobToken+" bob\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := tk.Reload(); err != nil {
		t.Fatal(err)
	}
	alice.send([]byte("still here"))
	if got := string(alice.next(5 * time.Second)); got != "still here" {
		t.Fatalf("alice after the reload: %q", got)
	}
	again := dial(t, b)
	again.send([]byte(aliceToken))
	if got := string(again.next(5 * time.Second)); !strings.Contains(got, "refused") {
		t.Errorf("a removed token: %q", got)
	}
	bob := dial(t, b)
	bob.send([]byte(bobToken))
	if got := string(bob.next(5 * time.Second)); got != `{"auth":"ok","identity":"bob"}` {
		t.Errorf("a new token: %q", got)
	}
	// A bad file keeps the tokens in use.
	if err := os.WriteFile(path, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := tk.Reload(); err == nil {
		t.Error("a 5-byte token was accepted")
	}
	if tk.Len() != 1 {
		t.Errorf("%d tokens after a failed reload, want the 1 in use", tk.Len())
	}
}

// TestTokenFileErrors: a token file that cannot be right is refused with
// the line that is wrong.
func TestTokenFileErrors(t *testing.T) {
	for _, c := range []struct{ content, want string }{
		{"short\n", "line 1: the token is 5 bytes"},
		{"# comment\n\n" + aliceToken + " alice publish=maybe\n", "line 3: publish="},
		{aliceToken + " alice colour=blue\n", "unknown field"},
		{aliceToken + "\n" + aliceToken + "\n", "listed twice"},
	} {
		_, err := broker.NewTokens(writeFile(t, "tokens", c.content))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error with %q", c.content, err, c.want)
		}
	}
	if _, err := broker.NewTokens(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing file was accepted")
	}
}

func signHS(t testing.TB, secret []byte, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestJWT: HMAC and public keys; sub is the identity; exp and nbf are
// checked; a bad signature, a token for another key kind (the algorithm
// confusion attack) and alg none are refused.
func TestJWT(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef-hmac-secret")
	hj, err := broker.NewJWT(writeFile(t, "secret", string(secret)+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	edPubDER, _ := x509.MarshalPKIXPublicKey(edPriv.Public())
	ej, err := broker.NewJWT(writeFile(t, "ed.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: edPubDER}))))
	if err != nil {
		t.Fatal(err)
	}
	rsaPriv, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaPubDER, _ := x509.MarshalPKIXPublicKey(&rsaPriv.PublicKey)
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaPubDER})
	rj, err := broker.NewJWT(writeFile(t, "rsa.pem", string(rsaPEM)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	sign := func(m jwt.SigningMethod, key any, c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ok := jwt.MapClaims{"sub": "carol", "exp": now.Add(time.Hour).Unix()}
	cases := []struct {
		name    string
		a       *broker.JWT
		token   string
		want    string // identity name, or the refusal's text
		publish bool
		groups  []string
	}{
		{"HS256", hj, signHS(t, secret, ok), "carol", true, nil},
		{"HS256 with rights", hj, signHS(t, secret, jwt.MapClaims{"sub": "dave", "hydrogen": map[string]any{"publish": false, "groups": []string{"room1"}}}), "dave", false, []string{"room1"}},
		{"expired", hj, signHS(t, secret, jwt.MapClaims{"sub": "carol", "exp": now.Add(-time.Hour).Unix()}), "token expired", false, nil},
		{"not valid yet", hj, signHS(t, secret, jwt.MapClaims{"sub": "carol", "nbf": now.Add(time.Hour).Unix()}), "token not valid yet", false, nil},
		{"no subject", hj, signHS(t, secret, jwt.MapClaims{"exp": now.Add(time.Hour).Unix()}), "token has no subject", false, nil},
		{"bad signature", hj, signHS(t, []byte("another secret, another secret, another"), ok), "credential refused", false, nil},
		{"alg none", hj, sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, ok), "credential refused", false, nil},
		{"EdDSA", ej, sign(jwt.SigningMethodEdDSA, edPriv, ok), "carol", true, nil},
		{"RS256", rj, sign(jwt.SigningMethodRS256, rsaPriv, ok), "carol", true, nil},
		// Signed with HMAC using the RSA public key's bytes as the secret:
		// accepted only by a verifier that lets the token pick the algorithm.
		{"algorithm confusion", rj, sign(jwt.SigningMethodHS256, rsaPEM, ok), "credential refused", false, nil},
		{"not a JWT", hj, "hello", "credential refused", false, nil},
	}
	for _, c := range cases {
		id, err := c.a.Authenticate(context.Background(), &net.TCPAddr{}, []byte(c.token))
		switch {
		case err != nil:
			if err.Error() != c.want {
				t.Errorf("%s: refused with %q, want %q", c.name, err, c.want)
			}
		case id.Name != c.want || id.Publish != c.publish || strings.Join(id.Groups, ",") != strings.Join(c.groups, ","):
			t.Errorf("%s: %+v, want %s publish=%v groups=%v", c.name, id, c.want, c.publish, c.groups)
		}
	}
	for _, bad := range []string{"short secret\n", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"} {
		if _, err := broker.NewJWT(writeFile(t, "bad", bad)); err == nil {
			t.Errorf("key file %q accepted", bad)
		}
	}
}

// TestPublishRights: the built-in broadcast application refuses, with an
// error frame, the frames of an identity that may not publish; others'
// frames reach it.
func TestPublishRights(t *testing.T) {
	tk := tokens(t, aliceToken+" alice\n"+bobToken+" bob publish=false\n")
	b := start(t, broker.Config{Authenticator: tk}, broker.Broadcast(), true, broker.OnEventLoop())
	alice, bob := dial(t, b), dial(t, b)
	alice.send([]byte(aliceToken))
	alice.next(5 * time.Second)
	bob.send([]byte(bobToken))
	bob.next(5 * time.Second)
	bob.send([]byte("from bob"))
	if got := string(bob.next(5 * time.Second)); got != `{"refused":"not allowed to publish"}` {
		t.Fatalf("bob's frame answered with %q", got)
	}
	alice.send([]byte("from alice"))
	if got := string(bob.next(5 * time.Second)); got != "from alice" {
		t.Fatalf("bob got %q, want alice's frame (and never his own)", got)
	}
	if st := b.Stats(); st.Actors.FramesRefused != 1 {
		t.Errorf("frames refused %d, want 1", st.Actors.FramesRefused)
	}
}

// TestCustomAuthenticator: an Authenticator of one's own may block (it
// runs off the event loops) and may panic (a refusal, not a crash); one
// that outlasts the timeout leaves its stream closed.
func TestCustomAuthenticator(t *testing.T) {
	release := make(chan struct{})
	a := broker.AuthenticatorFunc(func(ctx context.Context, remote net.Addr, cred []byte) (*broker.Identity, error) {
		switch string(cred) {
		case "slow":
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return &broker.Identity{Name: "slow", Publish: true}, nil
		case "panic":
			panic("the authenticator's bug")
		case "hang":
			<-ctx.Done()
			return nil, errors.New("gave up")
		}
		if remote.(*net.TCPAddr).IP.IsLoopback() && string(cred) == "local" {
			return &broker.Identity{Name: "local:" + remote.String(), Publish: true}, nil
		}
		return nil, errors.New("unknown")
	})
	b, _ := authBroker(t, a, 500*time.Millisecond)
	slow := dial(t, b)
	slow.send([]byte("slow"))
	local := dial(t, b)
	local.send([]byte("local"))
	if got := string(local.next(5 * time.Second)); !strings.HasPrefix(got, `{"auth":"ok","identity":"local:127.0.0.1:`) {
		t.Errorf("local, while slow is being checked: %q", got)
	}
	close(release)
	if got := string(slow.next(5 * time.Second)); got != `{"auth":"ok","identity":"slow"}` {
		t.Errorf("slow: %q", got)
	}
	p := dial(t, b)
	p.send([]byte("panic"))
	if got := string(p.next(5 * time.Second)); got != `{"error":"auth: internal error"}` {
		t.Errorf("panic: %q", got)
	}
	p.expectEOF(5 * time.Second)
	h := dial(t, b)
	h.send([]byte("hang"))
	h.expectEOF(5 * time.Second) // closed at the timeout, or refused as it gives up: closed either way
	unknown := dial(t, b)
	unknown.send([]byte("who?"))
	if got := string(unknown.next(5 * time.Second)); got != `{"error":"auth: unknown"}` {
		t.Errorf("unknown: %q", got)
	}
}

// TestAuthCredentialAloneInItsRead: a credential that came alone in its
// read leaves nothing of that read waiting for the verdict; reads of
// other streams, which may reuse the same delivery, are served as theirs
// alone, exactly once, and the authenticated stream gets only what it
// sends after. (A held reference to the finished read once forwarded
// another stream's frames as this one's.)
func TestAuthCredentialAloneInItsRead(t *testing.T) {
	release := make(chan struct{})
	a := broker.AuthenticatorFunc(func(ctx context.Context, _ net.Addr, cred []byte) (*broker.Identity, error) {
		if string(cred) == "slow" {
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return &broker.Identity{Name: string(cred), Publish: true}, nil
	})
	b, rec := authBroker(t, a, 5*time.Second)
	other := dial(t, b)
	other.send([]byte("fast"))
	if got := string(other.next(5 * time.Second)); got != `{"auth":"ok","identity":"fast"}` {
		t.Fatalf("fast: %q", got)
	}
	slow := dial(t, b)
	slow.send([]byte("slow"))
	waitFor(t, "the slow credential taken", 5*time.Second, func() bool { return b.Stats().IO.MsgRecv >= 2 })
	for i := range 20 { // reads of the other stream while slow's verdict waits
		other.send(fmt.Appendf(nil, "o%d-a", i), fmt.Appendf(nil, "o%d-b", i))
		for _, want := range []string{fmt.Sprintf("o%d-a", i), fmt.Sprintf("o%d-b", i)} {
			if got := string(other.next(5 * time.Second)); got != want {
				t.Fatalf("other: %q, want %q", got, want)
			}
		}
	}
	close(release)
	if got := string(slow.next(5 * time.Second)); got != `{"auth":"ok","identity":"slow"}` {
		t.Fatalf("slow: %q", got)
	}
	slow.send([]byte("mine"))
	if got := string(slow.next(5 * time.Second)); got != "mine" {
		t.Fatalf("slow's echo: %q", got)
	}
	if got, err := slow.tryNext(200 * time.Millisecond); err == nil {
		t.Fatalf("slow got %q more", got)
	}
	if got, err := other.tryNext(200 * time.Millisecond); err == nil {
		t.Fatalf("other got %q more", got)
	}
	if n := len(rec.events()); n != 2+40+1 {
		t.Errorf("the application heard %d events, want 43: %q", n, rec.events())
	}
}
