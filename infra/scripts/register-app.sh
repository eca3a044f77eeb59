#!/usr/bin/env bash
# Registers (or updates) BookingBridge's multi-tenant Entra app registration with the Azure CLI and
# puts a client secret straight into Key Vault.
#
#   infra/scripts/register-app.sh [--host HOST] [--vault NAME] [options]
#   infra/scripts/register-app.sh --dry-run --host HOST --vault NAME   # print the az commands only
#
# What it sets, from two data files (single sources of truth, also read by tests/unit/test_infra.py):
#   infra/graph-permissions.json   Microsoft Graph permissions (delegated = Scope, application = Role)
#   infra/app-registration.json    display name, redirect paths under https://HOST/api (web: the
#                                  OAuth redirects; spa: the admin console at /api/console/), the
#                                  exposed delegated scope access_as_user, app roles
# plus the identifier URI api://<appId> (or --identifier-uri) that bearer tokens carry as aud; the
# admin console signs people in for <identifier URI>/access_as_user (shared/api/auth.py).
#
# Idempotent: an existing registration with the same display name is updated, not duplicated; a
# client secret is minted only when the vault has none yet (or with --rotate-secret).
#
# The secret never reaches the terminal, a log or a process's argument list: `az ad app credential
# reset` prints it into a shell variable, the script writes it to a private temporary file, and
# `az keyvault secret set --file` reads it from there (--output none: set would echo the value back).
#
# Needs: bash, az (logged in to the tenant that owns the registration; Application Developer or
# Cloud Application Administrator), python3 (to build the JSON payloads), Key Vault Secrets Officer
# on the vault (main.bicep grants it to the principal that ran azd). HOST and the vault name default
# to the azd environment's outputs SERVICE_API_HOST and AZURE_KEY_VAULT_NAME.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
infra_dir="$(dirname "$script_dir")"
permissions_file="$infra_dir/graph-permissions.json"
registration_file="$infra_dir/app-registration.json"

dry_run=0
host=""
vault=""
display_name=""
identifier_uri=""
secret_name=""
secret_years=1
rotate_secret=0

usage() {
  cat <<'EOF'
Usage: register-app.sh [options]
  --host HOST             public host of the Function App (default: azd env SERVICE_API_HOST)
  --vault NAME            Key Vault for the client secret (default: azd env AZURE_KEY_VAULT_NAME)
  --display-name NAME     app registration display name (default: from infra/app-registration.json)
  --identifier-uri URI    identifier URI / token audience (default: api://<appId>)
  --secret-name NAME      Key Vault secret name (default: azd env BB_CLIENT_SECRET_NAME, else
                          bookingbridge-client-secret, the app's default: shared/settings.py)
  --secret-years N        client secret lifetime in years (default: 1)
  --rotate-secret         mint a new client secret even if the vault already has one
  --dry-run               print the az commands (secrets masked) and change nothing
  -h, --help              this text
EOF
}

die() {
  echo "register-app.sh: $*" >&2
  exit 2
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --host) host="${2:?--host needs a value}"; shift 2 ;;
    --vault) vault="${2:?--vault needs a value}"; shift 2 ;;
    --display-name) display_name="${2:?--display-name needs a value}"; shift 2 ;;
    --identifier-uri) identifier_uri="${2:?--identifier-uri needs a value}"; shift 2 ;;
    --secret-name) secret_name="${2:?--secret-name needs a value}"; shift 2 ;;
    --secret-years) secret_years="${2:?--secret-years needs a value}"; shift 2 ;;
    --rotate-secret) rotate_secret=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

command -v python3 >/dev/null 2>&1 || die "python3 is needed to build the JSON payloads"
[[ "$secret_years" =~ ^[1-9][0-9]*$ ]] || die "--secret-years must be a positive integer"

# Defaults from the azd environment (outputs of infra/main.bicep), when azd is there.
azd_value() {
  if command -v azd >/dev/null 2>&1; then
    azd env get-value "$1" 2>/dev/null || true
  fi
}
[[ -n "$host" ]] || host="$(azd_value SERVICE_API_HOST)"
[[ -n "$vault" ]] || vault="$(azd_value AZURE_KEY_VAULT_NAME)"
[[ -n "$secret_name" ]] || secret_name="$(azd_value BB_CLIENT_SECRET_NAME)"
# The name the app reads when BB_CLIENT_SECRET_NAME is not set (shared/settings.py).
secret_name="${secret_name:-bookingbridge-client-secret}"
if [[ $dry_run -eq 1 ]]; then
  host="${host:-<host>}"
  vault="${vault:-<vault>}"
fi
[[ -n "$host" ]] || die "no --host and no azd environment output SERVICE_API_HOST (run azd provision first)"
[[ -n "$vault" ]] || die "no --vault and no azd environment output AZURE_KEY_VAULT_NAME"
host="${host#https://}"
host="${host%%/*}"

work_dir="$(mktemp -d)"
trap 'rm -rf "$work_dir"' EXIT
chmod 700 "$work_dir"

# Build the az payloads from the data files. Written as files because az takes JSON as @file.
python3 - "$permissions_file" "$registration_file" "$work_dir" "$host" <<'PY'
import json
import sys
from pathlib import Path

permissions_path, registration_path, out_dir, host = sys.argv[1:5]
permissions = json.loads(Path(permissions_path).read_text())
registration = json.loads(Path(registration_path).read_text())
out = Path(out_dir)

access = [{"id": p["id"], "type": "Scope"} for p in permissions["delegated"]]
access += [{"id": p["id"], "type": "Role"} for p in permissions["application"]]
required = [{"resourceAppId": permissions["resourceAppId"], "resourceAccess": access}]
roles = [
    {k: role[k] for k in ("allowedMemberTypes", "description", "displayName", "id", "isEnabled", "value")}
    for role in registration["appRoles"]
]
redirects = [f"https://{host}/api{path}" for path in registration["redirectPaths"]]
spa_redirects = [f"https://{host}/api{path}" for path in registration["spaRedirectPaths"]]
scope_keys = (
    "adminConsentDescription", "adminConsentDisplayName", "id", "isEnabled", "type",
    "userConsentDescription", "userConsentDisplayName", "value",
)
scopes = [{k: scope[k] for k in scope_keys} for scope in registration["oauth2PermissionScopes"]]
# What az ad app has no option for: the spa platform and the exposed scopes (Graph PATCH body;
# `api` is replaced as a whole, so the token version is repeated here).
platform = {
    "spa": {"redirectUris": spa_redirects},
    "api": {"requestedAccessTokenVersion": 2, "oauth2PermissionScopes": scopes},
}

(out / "required-resource-accesses.json").write_text(json.dumps(required, separators=(",", ":")))
(out / "app-roles.json").write_text(json.dumps(roles, separators=(",", ":")))
(out / "redirect-uris").write_text("\n".join(redirects) + "\n")
(out / "spa-redirect-uris").write_text("\n".join(spa_redirects) + "\n")
(out / "spa-and-scopes.json").write_text(json.dumps(platform, separators=(",", ":")))
(out / "display-name").write_text(registration["displayName"] + "\n")
(out / "sign-in-audience").write_text(registration["signInAudience"] + "\n")
PY

mapfile -t redirect_uris <"$work_dir/redirect-uris"
mapfile -t spa_redirect_uris <"$work_dir/spa-redirect-uris"
[[ -n "$display_name" ]] || display_name="$(<"$work_dir/display-name")"
sign_in_audience="$(<"$work_dir/sign-in-audience")"
required_file="$work_dir/required-resource-accesses.json"
roles_file="$work_dir/app-roles.json"
platform_file="$work_dir/spa-and-scopes.json"

# Prints a command the way a person would retype it: an argument with shell-special characters is
# double-quoted when that is enough (JMESPath and OData filters contain single quotes), else
# single-quoted.
show() {
  local out="+" arg special='[][[:space:]'"'"'"$`\\*?|&;<>(){}!#~]'
  for arg in "$@"; do
    if [[ ! "$arg" =~ $special ]]; then
      out+=" $arg"
    elif [[ ! "$arg" =~ [\"\$\`\\!] ]]; then
      out+=" \"$arg\""
    else
      out+=" '${arg//\'/\'\\\'\'}'"
    fi
  done
  echo "$out"
}

# Runs a command, or only shows it in a dry run.
run() {
  show "$@"
  if [[ $dry_run -eq 0 ]]; then
    "$@"
  fi
}

# Runs a command, retrying for a while: Entra and Azure RBAC are eventually consistent, so a
# registration created a moment ago, or a role assignment made by `azd provision`, can take from
# seconds to minutes to be visible.
run_retry() {
  show "$@"
  [[ $dry_run -eq 0 ]] || return 0
  local attempt
  for attempt in 1 2 3 4 5 6; do
    if "$@"; then
      return 0
    fi
    [[ $attempt -lt 6 ]] || return 1
    echo "# not there yet; retrying in $((attempt * 10)) s" >&2
    sleep $((attempt * 10))
  done
}

# Runs a command whose stdout the script needs; a dry run shows it and yields $DRY_VALUE instead.
# The command is shown on fd 3 (the script's stdout) because stdout is the captured value here.
exec 3>&1
capture() {
  show "$@" >&3
  if [[ $dry_run -eq 0 ]]; then
    "$@"
  else
    echo "${DRY_VALUE:-}"
  fi
}

if [[ $dry_run -eq 1 ]]; then
  echo "# dry run: nothing is changed; payloads as passed to az:"
  echo "# required-resource-accesses.json: $(<"$required_file")"
  echo "# app-roles.json: $(<"$roles_file")"
  echo "# spa-and-scopes.json: $(<"$platform_file")"
fi

# 1. Find or create the registration.
app_id="$(DRY_VALUE="" capture az ad app list --display-name "$display_name" --query "[].appId" --output tsv)"
if [[ "$(wc -w <<<"$app_id")" -gt 1 ]]; then
  die "several app registrations are named '$display_name'; pass --display-name to pick a unique one"
fi
if [[ -z "$app_id" ]]; then
  app_id="$(DRY_VALUE="<appId>" capture az ad app create \
    --display-name "$display_name" \
    --sign-in-audience "$sign_in_audience" \
    --web-redirect-uris "${redirect_uris[@]}" \
    --required-resource-accesses "@$required_file" \
    --app-roles "@$roles_file" \
    --query appId --output tsv)"
fi
[[ -n "$app_id" ]] || die "az ad app create returned no appId"
[[ -n "$identifier_uri" ]] || identifier_uri="api://$app_id"

# 2. Make an existing registration match too (redirect URIs, permissions, roles, identifier URI).
#    v2 access tokens for our API: shared/auth.py validates the v2 issuer
#    (https://login.microsoftonline.com/<tid>/v2.0) and accepts the client id as audience.
run_retry az ad app update --id "$app_id" \
  --set api.requestedAccessTokenVersion=2 \
  --sign-in-audience "$sign_in_audience" \
  --identifier-uris "$identifier_uri" \
  --web-redirect-uris "${redirect_uris[@]}" \
  --required-resource-accesses "@$required_file" \
  --app-roles "@$roles_file"

# 2b. The admin console: its SPA redirect URI (MSAL Browser redeems codes cross-origin, which Entra
#     allows only for spa URIs: AADSTS9002326 otherwise) and the delegated scope it signs people in
#     for. `az ad app` has no option for either, so Microsoft Graph is patched directly.
run_retry az rest --method PATCH \
  --uri "https://graph.microsoft.com/v1.0/applications(appId='$app_id')" \
  --headers "Content-Type=application/json" \
  --body "@$platform_file"

# 3. The service principal (enterprise app) in the home tenant: admin consent and Exchange RBAC for
#    Applications (scope-rooms.ps1) refer to it; customers' tenants get theirs through consent.
if [[ -z "$(DRY_VALUE="" capture az ad sp list --filter "appId eq '$app_id'" --query "[].id" --output tsv)" ]]; then
  run_retry az ad sp create --id "$app_id" --output none
fi

# 4. Client secret -> Key Vault, only if the vault has none yet (list returns names, never values).
existing_secret="$(DRY_VALUE="" capture az keyvault secret list --vault-name "$vault" \
  --query "[?name=='$secret_name'].id" --output tsv)"
if [[ -z "$existing_secret" || $rotate_secret -eq 1 ]]; then
  secret_file="$work_dir/client-secret"
  show az ad app credential reset --id "$app_id" --append \
    --display-name "bookingbridge $(date -u +%Y-%m-%d)" --years "$secret_years" \
    --query password --output tsv
  echo "#   its output, the secret (***), goes to the private file $secret_file, never to the terminal"
  if [[ $dry_run -eq 0 ]]; then
    (
      umask 077
      # Command substitution keeps the value off the terminal; printf is a shell builtin, so the
      # value never appears in a process argument list.
      client_secret="$(az ad app credential reset --id "$app_id" --append \
        --display-name "bookingbridge $(date -u +%Y-%m-%d)" --years "$secret_years" \
        --query password --output tsv)"
      [[ -n "$client_secret" ]] || die "az ad app credential reset returned no secret"
      printf '%s' "$client_secret" >"$secret_file"
    )
  fi
  run_retry az keyvault secret set --vault-name "$vault" --name "$secret_name" \
    --file "$secret_file" --encoding utf-8 --output none
  [[ $dry_run -eq 1 ]] || rm -f "$secret_file"
else
  echo "# Key Vault $vault already has secret $secret_name; not minting another (use --rotate-secret)."
fi

# 5. Tell the app its client id (azd writes it into the app settings on the next provision).
if command -v azd >/dev/null 2>&1 || [[ $dry_run -eq 1 ]]; then
  run azd env set BB_CLIENT_ID "$app_id" || echo "# azd env set failed: run it yourself in the azd project"
  if [[ "$identifier_uri" != "api://$app_id" ]]; then
    # A custom identifier URI is the API's audience (the Bicep default is api://<clientId>).
    run azd env set BB_API_AUDIENCE "$identifier_uri" || echo "# azd env set failed: set BB_API_AUDIENCE yourself"
  fi
fi

consent_redirect="$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' \
  "https://$host/api/oauth/adminconsent")"
cat <<EOF

App registration: $display_name
  client id (BB_CLIENT_ID):      $app_id
  identifier URI (audience):     $identifier_uri
  redirect URIs (web):           ${redirect_uris[*]}
  redirect URIs (spa, console):  ${spa_redirect_uris[*]}
  delegated scope (console):     $identifier_uri/access_as_user
  client secret:                 Key Vault $vault, secret $secret_name (value not shown)

Next:
  1. azd provision            # puts BB_CLIENT_ID into the Function App's settings
  2. Each customer's admin grants consent (application permissions need it):
     https://login.microsoftonline.com/organizations/v2.0/adminconsent?client_id=$app_id&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default&redirect_uri=$consent_redirect&state=<opaque>
  3. To limit application access to chosen room mailboxes: infra/scripts/scope-rooms.ps1
  4. Admin console: https://$host/api/console/ — give building admins the Building.Admin app role
     (Enterprise applications > $display_name > Users and groups) and their buildings claim; each
     consents to access_as_user on first sign-in (or an admin consents for the organization).
EOF
