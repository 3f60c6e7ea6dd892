package codeengine

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/kar-runtime/kar/autoscale"
)

// SetScale makes app name keep n instances, at most max: a merge patch of
// scale_min_instances = n and scale_max_instances = max, with If-Match
// the entity tag just read, as RunApp updates. Code Engine's own
// autoscaler sees no HTTP traffic for a kar component (its requests come
// through Kafka), so it holds the app at its minimum: the minimum is the
// scale, and 0 lets Code Engine scale the app to zero. The app is left as
// it is when it has those values already.
func (c *Client) SetScale(ctx context.Context, p Project, name string, n, max int) (App, error) {
	if n < 0 || max < 1 || n > max {
		return App{}, fmt.Errorf("scale of app %s: %d instances, at most %d: want 0 <= instances <= max, max >= 1", name, n, max)
	}
	app, etag, err := c.GetApp(ctx, p, name)
	if err != nil {
		return app, err
	}
	if app.ScaleMinInstances == n && app.ScaleMaxInstances == max {
		return app, nil
	}
	path, params := appPath(p, name)
	_, err = c.call(ctx, "scale app "+name, request{
		svc: c.ce, method: http.MethodPatch, path: path, params: params,
		header: map[string]string{"If-Match": etag},
		body:   map[string]any{"scale_min_instances": n, "scale_max_instances": max},
	}, &app)
	return app, err
}

// Autoscale keeps app name's scale to what the policy of s wants for t's
// load, read from r every poll, until ctx ends (`kar ce autoscale`). The
// app must exist: a missing app or bad credentials fail at once.
func (c *Client) Autoscale(ctx context.Context, p Project, name string, r autoscale.Reader, t autoscale.Target, s *autoscale.Scaler, poll time.Duration, log *slog.Logger) error {
	app, _, err := c.GetApp(ctx, p, name)
	if err != nil {
		return err
	}
	max := s.Policy().Max
	current := app.ScaleMinInstances
	if app.ScaleMaxInstances != max {
		current = -1 // set the maximum on the first poll too
	}
	return autoscale.Loop(ctx, r, t, s, poll, current, func(ctx context.Context, n int, _ autoscale.Input) error {
		_, err := c.SetScale(ctx, p, name, n, max)
		return err
	}, log)
}
