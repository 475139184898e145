# Placeholder until the shipping issue: the multi-stage build of the four binaries (and the
# agent image with the pinned helm from e2e/tools/helm) lands there.
FROM scratch
