"""Azure Resource Manager tasks for AKS: one module per resource kind (managed clusters, agent pools)."""
