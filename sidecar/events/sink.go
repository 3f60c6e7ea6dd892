package events

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/kar-runtime/kar/internal/wait"
)

// deliverSink posts one event to a subscription's sink as a CloudEvent in
// binary mode, with Knative Eventing's delivery semantics: 2xx is
// delivered; 404, 408, 409, 429, 5xx and network errors are retried (the
// error returned makes the runner back off and call again, attempt+1) up
// to sub.Retry times; any other answer, or retries exhausted, sends the
// event to the dead letter sink if there is one, else logs and skips it.
func (s *Service) deliverSink(ctx context.Context, sub Subscription, p published, attempt int) error {
	status, err := s.post(ctx, sub.Sink, p)
	if err == nil && status/100 == 2 {
		return nil
	}
	reason := ""
	if err != nil {
		reason = err.Error()
	} else {
		reason = "status " + strconv.Itoa(status)
	}
	if err != nil || retryable(status) {
		if sub.Retry == nil || attempt <= *sub.Retry {
			return fmt.Errorf("sink %s: %s", sub.Sink, reason)
		}
		reason += fmt.Sprintf(" after %d retries", *sub.Retry)
	}
	s.deadLetter(ctx, sub, p, status, reason)
	return nil
}

// retryable are the answers Knative retries.
func retryable(status int) bool {
	switch status {
	case http.StatusNotFound, http.StatusRequestTimeout, http.StatusConflict, http.StatusTooManyRequests:
		return true
	}
	return status >= 500
}

// post sends the event and returns the status (err: no answer).
func (s *Service) post(ctx context.Context, url string, p published) (int, error) {
	req, err := cehttp.NewHTTPRequestFromEvent(ctx, url, *p.ev)
	if err != nil {
		return 0, err
	}
	resp, err := s.opts.HTTPClient.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// deadLetter hands an undeliverable event to the dead letter sink, with
// Knative's error extensions, trying a few times; failing that (or without
// a dead letter sink) it logs the event and skips it.
func (s *Service) deadLetter(ctx context.Context, sub Subscription, p published, status int, reason string) {
	if sub.DeadLetterSink == "" {
		s.log.Error("events: sink rejected an event; skipping it (give the subscription a deadLetterSink to keep such events)",
			"actor_type", sub.Actor.Type, "actor_id", sub.Actor.ID, "subscription", sub.ID, "sink", sub.Sink,
			"event", p.ev.ID(), "reason", oneLine(reason))
		return
	}
	ev := p.ev.Clone()
	ev.SetExtension("knativeerrordest", sub.Sink)
	if status != 0 {
		ev.SetExtension("knativeerrorcode", strconv.Itoa(status))
	}
	dl := published{ev: &ev, wrapped: p.wrapped}
	backoff := s.opts.RetryMin
	for attempt := 1; attempt <= 3; attempt++ {
		st, err := s.post(ctx, sub.DeadLetterSink, dl)
		if err == nil && st/100 == 2 {
			s.log.Warn("events: sink rejected an event; sent it to the dead letter sink", "subscription", sub.ID,
				"sink", sub.Sink, "event", p.ev.ID(), "reason", oneLine(reason))
			return
		}
		if !wait.Sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, s.opts.RetryMax, 5*time.Second)
	}
	s.log.Error("events: neither the sink nor the dead letter sink took an event; skipping it", "subscription", sub.ID,
		"sink", sub.Sink, "dead_letter_sink", sub.DeadLetterSink, "event", p.ev.ID(), "reason", oneLine(reason))
}
