package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/aiquota/aiquota/internal/naming"
)

const kindConfigMap = "ConfigMap"

// rendered is a config ready to be written.
type rendered struct {
	data []byte
	hash string
	ca   []byte // nil without a CA bundle
}

// errNotOwned: a ConfigMap of the rendered name exists and someone else controls it.
// We never take over or overwrite an object we did not create.
var errNotOwned = errors.New("exists and is not controlled by this object")

// currentConfigMap returns the rendered ConfigMap as it stands, or nil if there is none.
func (d *deps) currentConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error) {
	key := types.NamespacedName{Namespace: namespace, Name: name}
	cm := &corev1.ConfigMap{}
	err := d.client.Get(ctx, key, cm)
	if err == nil {
		return freshest(d.writes, kindConfigMap, cm), nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("get ConfigMap %s from cache: %w", key, err)
	}
	// The cache holds only labelled ConfigMaps (CacheOptions): this one may not
	// exist, may be someone else's or have lost its label, or may be our own create
	// that the cache has not seen yet. Only the API server can tell, and a create
	// in the last two cases would fail with AlreadyExists on every retry
	// (TestProviderQuotaConfigMapNameTaken); this is rare enough to ask it.
	if err := d.apiReader.Get(ctx, key, cm); err != nil {
		if apierrors.IsNotFound(err) {
			d.writes.forget(kindConfigMap, key)
			return nil, nil
		}
		return nil, fmt.Errorf("get ConfigMap %s: %w", key, err)
	}
	return cm, nil
}

// applyConfigMap makes the owner's ConfigMap hold r, writing only when something
// differs. It reports whether it wrote.
func (d *deps) applyConfigMap(ctx context.Context, owner client.Object, forKind, name string, r rendered, current *corev1.ConfigMap) (bool, error) {
	desired := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   owner.GetNamespace(),
			Labels:      map[string]string{naming.LabelConfigFor: forKind, naming.LabelManagedBy: naming.ManagedBy},
			Annotations: map[string]string{naming.AnnotationConfigHash: r.hash},
		},
		Data: map[string]string{naming.ConfigKey: string(r.data)},
	}
	if r.ca != nil {
		desired.Data[naming.CAKey] = string(r.ca)
	}
	if current == nil {
		if err := controllerutil.SetControllerReference(owner, desired, d.client.Scheme()); err != nil {
			return false, fmt.Errorf("set owner of ConfigMap %s: %w", name, err)
		}
		if err := d.client.Create(ctx, desired); err != nil {
			return false, fmt.Errorf("create ConfigMap %s: %w", name, err)
		}
		d.writes.remember(kindConfigMap, desired)
		return true, nil
	}
	if !metav1.IsControlledBy(current, owner) {
		return false, fmt.Errorf("ConfigMap %s %w", name, errNotOwned)
	}
	if configMapUpToDate(current, desired) {
		return false, nil
	}
	updated := current.DeepCopy()
	updated.Data = desired.Data
	updated.BinaryData = nil
	if updated.Labels == nil {
		updated.Labels = map[string]string{}
	}
	maps.Copy(updated.Labels, desired.Labels)
	if updated.Annotations == nil {
		updated.Annotations = map[string]string{}
	}
	maps.Copy(updated.Annotations, desired.Annotations)
	if err := d.client.Patch(ctx, updated, client.MergeFrom(current)); err != nil {
		return false, fmt.Errorf("update ConfigMap %s: %w", name, err)
	}
	d.writes.remember(kindConfigMap, updated)
	return true, nil
}

func configMapUpToDate(current, desired *corev1.ConfigMap) bool {
	if !maps.Equal(current.Data, desired.Data) || len(current.BinaryData) > 0 {
		return false
	}
	for k, v := range desired.Labels {
		if current.Labels[k] != v {
			return false
		}
	}
	for k, v := range desired.Annotations {
		if current.Annotations[k] != v {
			return false
		}
	}
	return true
}

// configHash is the hash a ConfigMap says it holds ("" for none).
func configHash(cm *corev1.ConfigMap) string {
	if cm == nil {
		return ""
	}
	return cm.Annotations[naming.AnnotationConfigHash]
}

// shortHash is a hash as people read it in messages.
func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
