//! in-memory kube-apiserver
