package inference

import (
	"context"
	"errors"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpa-plates/hpa/internal/bus"
)

// The current-model fact: the training coordinator and `hpa model promote` keep a bus.Promotion
// under bus.CurrentModelKey in the KV bucket bus.ModelsBucket (compare-and-set). A replica reads it
// when it starts (a promotion made while every replica was down is served when they come back) and
// watches it while it runs. Only locations below Config.ModelPrefixes are accepted (none: any).

// allowedModel reports whether loc is below one of the configured model prefixes.
func (s *Service) allowedModel(loc string) bool {
	if len(s.cfg.ModelPrefixes) == 0 {
		return true
	}
	for _, p := range s.cfg.ModelPrefixes {
		if p != "" && strings.HasPrefix(loc, p) {
			return true
		}
	}
	return false
}

// CurrentModel returns the location of the current-model fact ("" when there is none, or it is not
// below an allowed prefix).
func (s *Service) CurrentModel(ctx context.Context) string {
	kv, err := s.js.KeyValue(ctx, bus.ModelsBucket)
	if err != nil {
		return ""
	}
	e, err := kv.Get(ctx, bus.CurrentModelKey)
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			s.log.Warn("current model unreadable", "bucket", bus.ModelsBucket, "err", err)
		}
		return ""
	}
	p := bus.ParsePromotion(e.Value())
	if p.Location == "" || !s.allowedModel(p.Location) {
		s.log.Warn("current model refused: not below inference.model_prefixes", "location", p.Location, "prefixes", s.cfg.ModelPrefixes)
		return ""
	}
	return p.Location
}

// watchCurrent loads every new value of the current-model fact.
func (s *Service) watchCurrent(ctx context.Context) error {
	kv, err := bus.EnsureModelsBucket(ctx, s.js, s.cfg.Topology)
	if err != nil {
		s.log.Warn("current model not watched", "bucket", bus.ModelsBucket, "err", err)
		<-ctx.Done()
		return nil
	}
	w, err := kv.Watch(ctx, bus.CurrentModelKey)
	if err != nil {
		s.log.Warn("current model not watched", "bucket", bus.ModelsBucket, "err", err)
		<-ctx.Done()
		return nil
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return nil
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue // end of the initial values, or a delete
			}
			p := bus.ParsePromotion(e.Value())
			if p.Location == "" {
				continue
			}
			if !s.allowedModel(p.Location) {
				s.log.Warn("promotion refused: not below inference.model_prefixes", "location", p.Location, "prefixes", s.cfg.ModelPrefixes)
				continue
			}
			if _, cur, ok := s.model.info(); ok && cur == p.Location {
				continue
			}
			s.log.Info("current model changed", "version", p.Version, "location", p.Location)
			_ = s.Load(ctx, p.Location)
		}
	}
}
