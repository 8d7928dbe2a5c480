package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/credentials"
)

// TLS is what a node needs for mutual TLS with the others: its own
// certificate and key, and the CA that signs every node's certificate,
// read from PEM files. A node presents its certificate on every
// connection, in both directions, and accepts a connection only from a
// peer whose certificate chains to the CA; the certificate of a node it
// dials must also name the host it dials (its cluster address). A node's
// certificate is therefore both a server and a client certificate (no
// extended key usage, or both serverAuth and clientAuth).
//
// Reload reads the files again; connections made from then on use what it
// read, connections already up carry on. A TLS is safe for concurrent
// use.
type TLS struct {
	certFile, keyFile, caFile string
	cur                       atomic.Pointer[tlsFiles]
}

type tlsFiles struct {
	cert tls.Certificate
	pool *x509.CertPool
}

// Errors of LoadTLS and Reload, each wrapped with the file and the cause,
// so that a caller can tell which file is wrong.
var (
	ErrTLSCert = errors.New("cluster TLS certificate")
	ErrTLSKey  = errors.New("cluster TLS key")
	ErrTLSCA   = errors.New("cluster TLS CA")
)

// LoadTLS reads a node's certificate, its key and the cluster's CA from
// PEM files, and checks that they fit: the key is the certificate's, the
// CA file holds a certificate, the node's certificate is signed by it and
// is valid now.
func LoadTLS(certFile, keyFile, caFile string) (*TLS, error) {
	t := &TLS{certFile: certFile, keyFile: keyFile, caFile: caFile}
	if err := t.Reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// Reload reads the files again. When they do not fit it returns why and
// keeps what it had.
func (t *TLS) Reload() error {
	certPEM, err := os.ReadFile(t.certFile)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrTLSCert, err)
	}
	keyPEM, err := os.ReadFile(t.keyFile)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrTLSKey, err)
	}
	caPEM, err := os.ReadFile(t.caFile)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrTLSCA, err)
	}
	if b, _ := pem.Decode(certPEM); b == nil || b.Type != "CERTIFICATE" {
		return fmt.Errorf("%w %s: no PEM certificate in it", ErrTLSCert, t.certFile)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if _, cerr := x509.ParseCertificate(firstBlock(certPEM)); cerr != nil {
			return fmt.Errorf("%w %s: %v", ErrTLSCert, t.certFile, cerr)
		}
		return fmt.Errorf("%w %s: not the private key of %s: %v", ErrTLSKey, t.keyFile, t.certFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("%w %s: no PEM certificate in it", ErrTLSCA, t.caFile)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("%w %s: %v", ErrTLSCert, t.certFile, err)
		}
	}
	inter := x509.NewCertPool()
	for _, c := range cert.Certificate[1:] {
		if ic, err := x509.ParseCertificate(c); err == nil {
			inter.AddCert(ic)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("%w %s: not valid under the CA of %s: %v", ErrTLSCert, t.certFile, t.caFile, err)
	}
	t.cur.Store(&tlsFiles{cert: cert, pool: pool})
	return nil
}

func firstBlock(b []byte) []byte {
	if blk, _ := pem.Decode(b); blk != nil {
		return blk.Bytes
	}
	return nil
}

// Certificate is the node's certificate as last read.
func (t *TLS) Certificate() *x509.Certificate {
	c := t.cur.Load().cert
	if c.Leaf != nil {
		return c.Leaf
	}
	leaf, _ := x509.ParseCertificate(c.Certificate[0])
	return leaf
}

// NotAfter is when the node's certificate, as last read, expires.
func (t *TLS) NotAfter() time.Time {
	if c := t.Certificate(); c != nil {
		return c.NotAfter
	}
	return time.Time{}
}

func (t *TLS) clientConfig() *tls.Config {
	f := t.cur.Load()
	// gRPC sets ServerName to the host dialled: the peer's certificate
	// must name it.
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{f.cert}, RootCAs: f.pool}
}

func (t *TLS) serverConfig() *tls.Config {
	f := t.cur.Load()
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{f.cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: f.pool}
}

// creds are gRPC transport credentials that take the files as last read
// for every handshake, so that Reload needs no new server or dialler.
type creds struct{ t *TLS }

func (c creds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return credentials.NewTLS(c.t.clientConfig()).ClientHandshake(ctx, authority, raw)
}

func (c creds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return credentials.NewTLS(c.t.serverConfig()).ServerHandshake(raw)
}

func (c creds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

func (c creds) Clone() credentials.TransportCredentials { return c }

// OverrideServerName is gRPC's deprecated hook; the node always checks
// the host it dials.
func (c creds) OverrideServerName(string) error { return nil }
