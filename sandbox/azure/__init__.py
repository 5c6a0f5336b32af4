"""An Azure Resource Manager stand-in for Microsoft.ContainerService (AKS) with an Entra ID token endpoint."""
