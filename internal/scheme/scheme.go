// Package scheme builds the runtime.Scheme the manager and the tests share: the
// built-in kinds plus the aiquota API.
package scheme

import (
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	quotav1alpha1 "github.com/aiquota/aiquota/api/v1alpha1"
)

// New returns a scheme with client-go's kinds and quota.aiquota.dev/v1alpha1.
func New() *runtime.Scheme {
	s := runtime.NewScheme()
	// Both registrations are static tables; an error here is a programming error
	// that every test would hit at once.
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := quotav1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}
