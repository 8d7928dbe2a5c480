package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/hydrogen-mq/hydrogen/broker"
)

// securityFlags are the flags of `broker serve` that authenticate clients
// and encrypt their connections.
type securityFlags struct {
	tokenFile   string
	jwtKey      string
	authTimeout time.Duration
	tlsCert     string
	tlsKey      string
	tlsClientCA string
}

func (f *securityFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.tokenFile, "auth-token-file", "", "require authentication with the static tokens in this `file` (TOKEN [NAME] [publish=BOOL] [groups=A,B] per line); re-read on SIGHUP")
	fs.StringVar(&f.jwtKey, "auth-jwt-key", "", "require authentication with JWTs signed by this key `file` (a PEM public key, or an HMAC secret); re-read on SIGHUP")
	fs.DurationVar(&f.authTimeout, "auth-timeout", 5*time.Second, "close a stream that has not authenticated this long after it connected")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "serve clients over TLS with the certificate (chain) in this PEM `file`; re-read on SIGHUP")
	fs.StringVar(&f.tlsKey, "tls-key", "", "the private key of --tls-cert, a PEM `file`")
	fs.StringVar(&f.tlsClientCA, "tls-client-ca", "", "require client certificates signed by the CAs in this PEM `file` (mutual TLS); without other authentication a client's identity is its certificate's subject")
}

// certificate serves the certificate and key files, re-read on SIGHUP
// without dropping a connection: new handshakes get the new pair.
type certificate struct {
	certFile, keyFile string
	pair              atomic.Pointer[tls.Certificate]
}

func (c *certificate) reload() error {
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return err
	}
	c.pair.Store(&pair)
	return nil
}

// tlsConfig builds the client port's TLS configuration from the flags
// (nil when --tls-cert is not set) and what SIGHUP must re-read.
func (f *securityFlags) tlsConfig() (*tls.Config, []reloader, error) {
	switch {
	case f.tlsCert == "" && f.tlsKey == "" && f.tlsClientCA == "":
		return nil, nil, nil
	case f.tlsCert == "" || f.tlsKey == "":
		return nil, nil, fmt.Errorf("--tls-cert and --tls-key go together (and --tls-client-ca needs them)")
	}
	cert := &certificate{certFile: f.tlsCert, keyFile: f.tlsKey}
	if err := cert.reload(); err != nil {
		return nil, nil, fmt.Errorf("--tls-cert/--tls-key: %v", err)
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return cert.pair.Load(), nil
		},
	}
	if f.tlsClientCA != "" {
		pem, err := os.ReadFile(f.tlsClientCA)
		if err != nil {
			return nil, nil, fmt.Errorf("--tls-client-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("--tls-client-ca %s: no PEM certificate in it", f.tlsClientCA)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, []reloader{{"--tls-cert", cert.reload}}, nil
}

// reloader is what SIGHUP re-reads: token files, keys, certificates.
type reloader struct {
	name   string
	reload func() error
}

// authenticator builds the broker's Authenticator from the flags (nil when
// neither is set) and what SIGHUP must re-read.
func (f *securityFlags) authenticator() (broker.Authenticator, []reloader, error) {
	if f.authTimeout <= 0 {
		return nil, nil, fmt.Errorf("--auth-timeout %v: want a positive duration", f.authTimeout)
	}
	var auths broker.Credentials
	var reload []reloader
	if f.tokenFile != "" {
		t, err := broker.NewTokens(f.tokenFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--auth-token-file: %v", err)
		}
		auths = append(auths, t)
		reload = append(reload, reloader{"--auth-token-file", t.Reload})
	}
	if f.jwtKey != "" {
		j, err := broker.NewJWT(f.jwtKey)
		if err != nil {
			return nil, nil, fmt.Errorf("--auth-jwt-key: %v", err)
		}
		auths = append(auths, j)
		reload = append(reload, reloader{"--auth-jwt-key", j.Reload})
	}
	switch len(auths) {
	case 0:
		return nil, nil, nil
	case 1:
		return auths[0], reload, nil
	}
	return auths, reload, nil
}

// reloadAll re-reads what SIGHUP re-reads, logging each outcome. A file
// that fails to load leaves what was in use in place.
func reloadAll(rs []reloader, log *slog.Logger) {
	if len(rs) == 0 {
		log.Info("SIGHUP: nothing to re-read")
		return
	}
	for _, r := range rs {
		if err := r.reload(); err != nil {
			log.Error("SIGHUP: re-reading failed; keeping what was in use", "flag", r.name, "err", err)
			continue
		}
		log.Info("SIGHUP: re-read", "flag", r.name)
	}
}

// warnIfOpen warns when the client port is reachable beyond this machine
// with neither authentication nor TLS: anyone who reaches it reads every
// broadcast and sends to everyone.
func warnIfOpen(log *slog.Logger, addr net.Addr, auth, tls bool) {
	ta, ok := addr.(*net.TCPAddr)
	if !ok || ta.IP.IsLoopback() || auth || tls {
		return
	}
	log.Warn("the client port is open beyond this machine with neither authentication nor TLS: anyone who reaches it reads every broadcast and can send to everyone (see --auth-token-file, --auth-jwt-key, --tls-cert, --tls-client-ca)", "addr", addr.String())
}
