//! kubeinfer-operator: reconciles ModelDeployments (see issue "kubeinfer-operator").
