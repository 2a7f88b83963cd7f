// Package meshtest helps users test their services in a mesh: it starts a
// real control plane in-process on loopback, with a config directory the
// test writes.
//
//	func TestReviews(t *testing.T) {
//		cp := meshtest.StartControlPlane(t, meshtest.WriteConfig(t, map[string]string{
//			"reviews.yaml": reviewsYAML,
//		}))
//		m, err := mesh.New(ctx, mesh.WithService("reviews"), mesh.WithControlPlane(cp.XDSAddr()))
//		...
//	}
//
// WaitUntil waits, with a deadline, for what a test cannot be told about,
// in place of a sleep. Clock is a fake clock that a test moves on, for
// timers it would otherwise wait out (controlplane.WithClock).
package meshtest
