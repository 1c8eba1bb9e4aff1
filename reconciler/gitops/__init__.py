"""GitOps: keep the cluster equal to the manifests of git repositories (``kind: GitSource``).

``plan.py`` decides (pure), ``repo.py`` runs the git command, ``sync.py`` is the
thin shell the leader runs, ``routes.py`` the API. See README.md.
"""
