package balancer

import "sync/atomic"

// record counts one outcome toward outlier detection and returns the
// detector whose counter reached its threshold, or "" if none did.
func (st *endpointState) record(k FailureKind, o *outlierSettings) string {
	if k == FailureLocalOrigin && o.split {
		if bump(&st.cLocal, o.cLocal) {
			return EjectLocalOrigin
		}
		return ""
	}
	switch k {
	case FailureNone:
		reset(&st.c5)
		reset(&st.cGateway)
		reset(&st.cLocal)
	case Failure5xx:
		if bump(&st.c5, o.c5) {
			return Eject5xx
		}
	case FailureGateway, FailureLocalOrigin:
		hit5 := bump(&st.c5, o.c5)
		hitGateway := bump(&st.cGateway, o.cGateway)
		switch {
		case hitGateway:
			return EjectGateway
		case hit5:
			return Eject5xx
		}
	}
	return ""
}

// reset zeroes c without writing when it is already zero, so that the
// common case stays read-only on a shared cache line.
func reset(c *atomic.Int64) {
	if c.Load() != 0 {
		c.Store(0)
	}
}

// bump adds one to c and reports whether it reached threshold (0 is off),
// in which case c is reset.
func bump(c *atomic.Int64, threshold int64) bool {
	if threshold <= 0 {
		return false
	}
	if c.Add(1) < threshold {
		return false
	}
	c.Store(0)
	return true
}

// eject ejects st at time now, for reason, unless it is already ejected,
// gone, or the maximum ejection percentage forbids it.
func (b *Balancer) eject(st *endpointState, now int64, reason string) {
	o := b.s.outlier
	b.mu.Lock()
	defer b.mu.Unlock()
	changed := b.reviveLocked(now, false)
	if !st.removed && !st.ejected {
		ejected := 0
		for _, s := range b.states {
			if s.ejected {
				ejected++
			}
		}
		if (ejected+1)*100 <= o.maxPercent*b.total || (o.alwaysOne && ejected == 0) {
			if st.lastUneject != 0 && o.interval > 0 {
				st.backoff = max(0, st.backoff-(now-st.lastUneject)/o.interval)
			}
			if st.backoff*o.base < o.max {
				st.backoff++
			}
			st.ejected, st.reason = true, reason
			st.until = now + min(st.backoff*o.base, o.max)
			b.ejections.Add(1)
			changed = true
		}
	}
	if changed {
		b.rebuildLocked()
	}
}

// reviveLocked brings back the endpoints whose ejection has ended by now.
// It rebuilds the snapshot if rebuild is set and something changed, and
// reports whether something changed.
func (b *Balancer) reviveLocked(now int64, rebuild bool) bool {
	if b.s.outlier == nil {
		return false
	}
	changed := false
	for _, st := range b.states {
		if st.ejected && st.until <= now {
			st.ejected = false
			st.lastUneject = st.until
			changed = true
		}
	}
	if changed && rebuild {
		b.rebuildLocked()
	}
	return changed
}
