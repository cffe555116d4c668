#!/usr/bin/env bash
# Rebuild the run viewer: installs the locked npm packages and bundles src/ into ../static/.
# Works from any directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
npm ci --no-audit --no-fund
npm run build
