// Command etcd is the upstream etcd server (go.etcd.io/etcd/server/v3/etcdmain), built here for the
// chart install test; see tools/etcd/go.mod.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
