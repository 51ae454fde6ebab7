package auth

import (
	"context"
	"fmt"
	"net/url"

	"github.com/MicahParks/keyfunc/v3"
)

// remoteKeys is a keyfunc.Keyfunc over a remote JWKS that is built in the background.
//
// keyfunc.NewDefaultCtx fetches the set once before it returns, with a one-minute HTTP timeout,
// and then refreshes it every hour and on an unknown kid (at most once every five minutes); a failed
// first fetch is logged by jwkset and is not an error. Building it in a goroutine keeps a JWKS host
// that does not answer from holding up a cold start: verifications wait for the first fetch only as
// long as their own context allows, and the other providers are unaffected.
type remoteKeys struct {
	ready chan struct{}
	kf    keyfunc.Keyfunc
	err   error
}

// startRemoteKeys starts fetching the JWKS at jwksURL. ctx bounds the first fetch and ends the
// refresh goroutine when it is cancelled.
func startRemoteKeys(ctx context.Context, jwksURL string) *remoteKeys {
	r := &remoteKeys{ready: make(chan struct{})}
	go func() {
		defer close(r.ready)
		r.kf, r.err = keyfunc.NewDefaultCtx(ctx, []string{jwksURL})
	}()
	return r
}

// get returns the keyfunc once the first fetch has been attempted, or an error when ctx ends first.
func (r *remoteKeys) get(ctx context.Context) (keyfunc.Keyfunc, error) {
	select {
	case <-r.ready:
		if r.err != nil {
			return nil, fmt.Errorf("JWKS client: %w", r.err)
		}
		return r.kf, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("JWKS not loaded yet: %w", ctx.Err())
	}
}

// checkJWKSURL returns an error unless u is an absolute http or https URL with a host.
func checkJWKSURL(u string) error {
	parsed, err := url.ParseRequestURI(u)
	if err != nil {
		return fmt.Errorf("JWKS URL: %w", err)
	}
	if (parsed.Scheme != "https" && parsed.Scheme != "http") || parsed.Host == "" {
		return fmt.Errorf("JWKS URL %q: want an absolute https URL", u)
	}
	return nil
}
