package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/hydrogen-mq/hydrogen/client"
	"github.com/hydrogen-mq/hydrogen/internal/loadgen"
)

// clientFlags are how `broker stats` and `broker bench` reach a broker
// that requires TLS or a credential.
type clientFlags struct {
	credential     string
	credentialFile string
	tls            bool
	tlsCA          string
	serverName     string
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.credential, "credential", "", "authenticate with this `token` or JWT (prefer --credential-file or the environment: a flag shows in ps)")
	fs.StringVar(&f.credentialFile, "credential-file", "", "authenticate with the token or JWT in this `file` (a trailing newline is not part of it)")
	fs.BoolVar(&f.tls, "tls", false, "connect with TLS (implied by --tls-ca)")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "trust the CA certificates in this PEM `file` for TLS, instead of the system's")
	fs.StringVar(&f.serverName, "tls-server-name", "", "the `name` the broker's certificate must carry; default the host of --addr")
}

// resolve returns the credential (nil for none) and the TLS configuration
// (nil for plain TCP) the flags ask for.
func (f *clientFlags) resolve() ([]byte, *tls.Config, error) {
	var cred []byte
	switch {
	case f.credential != "" && f.credentialFile != "":
		return nil, nil, fmt.Errorf("--credential and --credential-file: give one")
	case f.credential != "":
		cred = []byte(f.credential)
	case f.credentialFile != "":
		b, err := os.ReadFile(f.credentialFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--credential-file: %v", err)
		}
		cred = []byte(strings.TrimRight(string(b), "\r\n"))
		if len(cred) == 0 {
			return nil, nil, fmt.Errorf("--credential-file %s: the file is empty", f.credentialFile)
		}
	}
	if !f.tls && f.tlsCA == "" && f.serverName == "" {
		return cred, nil, nil
	}
	cfg := &tls.Config{ServerName: f.serverName, MinVersion: tls.VersionTLS12}
	if f.tlsCA != "" {
		pem, err := os.ReadFile(f.tlsCA)
		if err != nil {
			return nil, nil, fmt.Errorf("--tls-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", f.tlsCA)
		}
		cfg.RootCAs = pool
	}
	return cred, cfg, nil
}

// dialOptions are the client options the flags ask for.
func (f *clientFlags) dialOptions() ([]client.Option, error) {
	cred, cfg, err := f.resolve()
	if err != nil {
		return nil, err
	}
	var opts []client.Option
	if cfg != nil {
		opts = append(opts, client.WithTLS(cfg))
	}
	if cred != nil {
		opts = append(opts, client.WithCredential(cred))
	}
	return opts, nil
}

// connect is the load generator's form of the same.
func (f *clientFlags) connect() (loadgen.Connect, error) {
	cred, cfg, err := f.resolve()
	return loadgen.Connect{TLS: cfg, Credential: cred}, err
}
