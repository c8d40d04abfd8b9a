// Command etcd is the etcd server from the release Kubernetes pins; etcd's own
// root module replaces its submodules with local paths and cannot be installed.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
