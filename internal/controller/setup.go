// Package controller holds one reconciler per aiquota kind.
package controller

import (
	ctrl "sigs.k8s.io/controller-runtime"
)

// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers every reconciler with the manager.
func SetupWithManager(mgr ctrl.Manager) error {
	_ = mgr
	return nil
}
