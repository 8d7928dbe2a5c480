package broker

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ErrCredential is the error the built-in authenticators return for a
// credential they refuse; its text, sent to the client, says no more than
// that.
var ErrCredential = errors.New("credential refused")

// Tokens is an Authenticator over a file of static tokens, one per line:
//
//	TOKEN [NAME] [publish=false] [groups=GROUP,GROUP,...]
//
// Blank lines and lines starting with # are skipped. NAME is the
// identity's name (default "token-" and the line number); publish=false
// keeps the identity from publishing; groups= lists the groups it may use
// (default: any). A token is at least 16 bytes with no white space.
//
// A credential is looked up by its SHA-256, so the time a lookup takes
// says nothing of how much of a token matched. Reload re-reads the file;
// streams already authenticated keep their identity.
type Tokens struct {
	path  string
	table atomic.Pointer[map[[sha256.Size]byte]*Identity]
}

// minTokenLen is the shortest static token: 16 bytes, about 96 bits as
// base64, beyond guessing over a network.
const minTokenLen = 16

// NewTokens reads the token file at path.
func NewTokens(path string) (*Tokens, error) {
	t := &Tokens{path: path}
	if err := t.Reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// Reload re-reads the token file. On error the tokens in use stay.
func (t *Tokens) Reload() error {
	f, err := os.Open(t.path)
	if err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	table := map[[sha256.Size]byte]*Identity{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		tok := fields[0]
		if len(tok) < minTokenLen {
			return fmt.Errorf("token file %s line %d: the token is %d bytes, want at least %d", t.path, n, len(tok), minTokenLen)
		}
		id := &Identity{Name: "token-" + strconv.Itoa(n), Publish: true}
		for i, f := range fields[1:] {
			switch k, v, ok := strings.Cut(f, "="); {
			case ok && k == "publish":
				p, err := strconv.ParseBool(v)
				if err != nil {
					return fmt.Errorf("token file %s line %d: publish=%q: want true or false", t.path, n, v)
				}
				id.Publish = p
			case ok && k == "groups":
				id.Groups = strings.Split(v, ",")
			case !ok && i == 0:
				id.Name = f
			default:
				return fmt.Errorf("token file %s line %d: unknown field %q (want TOKEN [NAME] [publish=BOOL] [groups=A,B])", t.path, n, f)
			}
		}
		h := sha256.Sum256([]byte(tok))
		if _, dup := table[h]; dup {
			return fmt.Errorf("token file %s line %d: a token listed twice", t.path, n)
		}
		table[h] = id
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("token file %s: %w", t.path, err)
	}
	t.table.Store(&table)
	return nil
}

// Len is the number of tokens in use.
func (t *Tokens) Len() int { return len(*t.table.Load()) }

// Authenticate implements Authenticator.
func (t *Tokens) Authenticate(_ context.Context, _ net.Addr, credential []byte) (*Identity, error) {
	h := sha256.Sum256(credential)
	id, ok := (*t.table.Load())[h]
	if !ok {
		return nil, ErrCredential
	}
	return id, nil
}

// JWT is an Authenticator of JSON Web Tokens signed with one key: an
// HMAC secret (HS256, HS384, HS512), or an RSA (RS*, PS*), ECDSA (ES*) or
// Ed25519 (EdDSA) public key. Only the algorithms of the key's kind are
// accepted. The token's sub claim is the identity's name and is
// required; exp and nbf are checked when present (with 5 s of leeway for
// clocks apart). An optional claim "hydrogen" holds the rights:
//
//	{"sub": "alice", "exp": 1767225600, "hydrogen": {"publish": false, "groups": ["room1"]}}
//
// publish defaults to true, groups to any. Reload re-reads the key file.
type JWT struct {
	path string
	key  atomic.Pointer[jwtKey]
}

type jwtKey struct {
	key     any
	methods []string
}

// hydrogenClaims are the claims the broker reads.
type hydrogenClaims struct {
	jwt.RegisteredClaims
	Hydrogen *struct {
		Publish *bool    `json:"publish"`
		Groups  []string `json:"groups"`
	} `json:"hydrogen,omitempty"`
}

// minHMACSecret is the shortest HMAC secret accepted: 256 bits, HS256's
// own strength.
const minHMACSecret = 32

// NewJWT reads the key file at path: a PEM public key ("PUBLIC KEY",
// "RSA PUBLIC KEY") or certificate, or else the HMAC secret's bytes (at
// least 32, a trailing newline not counted).
func NewJWT(path string) (*JWT, error) {
	j := &JWT{path: path}
	if err := j.Reload(); err != nil {
		return nil, err
	}
	return j, nil
}

// Reload re-reads the key file. On error the key in use stays.
func (j *JWT) Reload() error {
	b, err := os.ReadFile(j.path)
	if err != nil {
		return fmt.Errorf("JWT key: %w", err)
	}
	k, err := parseJWTKey(b)
	if err != nil {
		return fmt.Errorf("JWT key %s: %w", j.path, err)
	}
	j.key.Store(k)
	return nil
}

func parseJWTKey(b []byte) (*jwtKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		secret := bytes.TrimRight(b, "\r\n")
		if len(secret) < minHMACSecret {
			return nil, fmt.Errorf("not a PEM public key, and %d bytes is too short for an HMAC secret (want at least %d)", len(secret), minHMACSecret)
		}
		return &jwtKey{key: secret, methods: []string{"HS256", "HS384", "HS512"}}, nil
	}
	var pub crypto.PublicKey
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var c *x509.Certificate
		if c, err = x509.ParseCertificate(block.Bytes); err == nil {
			pub = c.PublicKey
		}
	default:
		return nil, fmt.Errorf("PEM block %q: want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE (never a private key)", block.Type)
	}
	if err != nil {
		return nil, err
	}
	switch pub.(type) {
	case *rsa.PublicKey:
		return &jwtKey{key: pub, methods: []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}}, nil
	case *ecdsa.PublicKey:
		return &jwtKey{key: pub, methods: []string{"ES256", "ES384", "ES512"}}, nil
	case ed25519.PublicKey:
		return &jwtKey{key: pub, methods: []string{"EdDSA"}}, nil
	}
	return nil, fmt.Errorf("a %T key: want RSA, ECDSA or Ed25519", pub)
}

// Authenticate implements Authenticator.
func (j *JWT) Authenticate(_ context.Context, _ net.Addr, credential []byte) (*Identity, error) {
	k := j.key.Load()
	var claims hydrogenClaims
	_, err := jwt.ParseWithClaims(string(credential), &claims, func(*jwt.Token) (any, error) { return k.key, nil },
		jwt.WithValidMethods(k.methods), jwt.WithLeeway(5*time.Second))
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, errors.New("token expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return nil, errors.New("token not valid yet")
	case err != nil:
		return nil, ErrCredential
	case claims.Subject == "":
		return nil, errors.New("token has no subject")
	}
	id := &Identity{Name: claims.Subject, Publish: true}
	if h := claims.Hydrogen; h != nil {
		if h.Publish != nil {
			id.Publish = *h.Publish
		}
		id.Groups = h.Groups
	}
	return id, nil
}

// Credentials is an Authenticator that accepts a credential when any of
// its authenticators does, asking them in order; the last refusal is
// returned. It lets a broker take static tokens and JWTs at once.
type Credentials []Authenticator

// Authenticate implements Authenticator.
func (cs Credentials) Authenticate(ctx context.Context, remote net.Addr, credential []byte) (*Identity, error) {
	err := ErrCredential
	for _, a := range cs {
		id, e := a.Authenticate(ctx, remote, credential)
		if e == nil {
			return id, nil
		}
		err = e
	}
	return nil, err
}
