"""A synthetic `deployment_events` store for the demo and the tests: batched Qovery engine events whose
error messages carry a known root cause, so the clustering can be scored against the truth.

The framing, the two example messages and the error shares come from Qovery's write-up "Improving
Developer Experience with Data Science" (the seed); the causes beyond the ~56% it explains are other
failures a continuous deployment platform sees.
"""

import json
import random
import string
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

_RULE = "-" * 79
_NEED_HELP = (
    "Look at the hint message first. If you need more assistance, you can reach the support team on Discord"
    " (https://discord.qovery.com) or on the Qovery console (https://console.qovery.com) with the integrated"
    " chat."
)


def frame_message(execution_id: str, scope_line: str, error_message: str, hint: str) -> str:
    """Wrap a user-facing error the way the Qovery engine reports it.

    `scope_line` is what follows "* Scope: ", e.g. "Build platform 'beta-build' with id 'ze9e19029'".
    """
    return (
        f"\n{_RULE}\n\n MESSAGE FOR QOVERY TEAM:\n * Execution ID: {execution_id}\n * Scope: {scope_line}\n"
        f" * Rollback message: \n\n{_RULE}\n\n"
        " \u274c \u274c \u274c MESSAGE FOR THE USER \u274c \u274c \u274c\n\n"
        f" \u2709\ufe0f Error message: {error_message}\n"
        f" \U0001f4ac Need help: {_NEED_HELP}\n"
        f" \u2139\ufe0f Hint: {hint}\n "
    )


# What the scope line names, and the `scope` of the event the engine files it under.
_BUILD_PLATFORM = "Build platform"
_APPLICATION = "Application"
_DATABASE = "Database"
_EVENT_SCOPE = {_BUILD_PLATFORM: "ENVIRONMENT", _APPLICATION: "APPLICATION", _DATABASE: "DATABASE"}


@dataclass(frozen=True)
class RootCause:
    """One reason deployments fail, with the messages a support engineer would file under it.

    `variants` and `hints` are `str.format` templates; their placeholders are drawn per event.
    """

    name: str
    share: float  # fraction of all error events
    state: str  # BUILD_ERROR or DEPLOYMENT_ERROR
    target: str  # what the scope line names: "Build platform", "Application" or "Database"
    variants: tuple[str, ...]
    hints: tuple[str, ...]  # the first is the usual wording

    @property
    def scope(self) -> str:
        return _EVENT_SCOPE[self.target]


_CANT_BUILD = "Qovery can't build your container image {app} ({zid})"
_BUILDPACKS_FAILED = "Buildpacks failed to build container image {app} ({zid})"
_DOCKER_BUILD_ERROR = "error while building container image {app} ({zid}). Error:"
_PUSH_ERROR = "error while pushing container image {app} ({zid}) to {registry}"
_CLONE_ERROR = "error while cloning repository {repo_url} for {app} ({zid})"
_NOT_STARTED = "Application {app} ({zid}) failed to start"
_CRASHED = "Application {app} ({zid}) crashed during startup"
_STOPPED = "Application {app} ({zid}) has been stopped"
_TIMED_OUT = "Deployment of application {app} ({zid}) has timed out"
_NO_CERTIFICATE = "Can't issue a TLS certificate for custom domain {domain} of application {app} ({zid})"
_NOT_DEPLOYED = "Application {app} ({zid}) can't be deployed"
_ENGINE_PANICKED = "Qovery Engine panicked while deploying {app} ({zid}): thread"

# Shares from the seed's insights: builder undetermined ~17%, liveness ~16.5%, multiple processes ~6%,
# Dockerfile builds ~5%, and cloud limits, git clones, API and engine bugs under 2% each.
ROOT_CAUSES: tuple[RootCause, ...] = (
    RootCause(
        name="buildpack_builder_undetermined",
        share=0.170,
        state="BUILD_ERROR",
        target=_BUILD_PLATFORM,
        variants=(
            _CANT_BUILD + " with one of the following builders: heroku/buildpacks:20. Please do provide a"
            " valid Dockerfile to build your application or contact the support.",
            _CANT_BUILD + " with one of the following builders: {builders}. Please do provide a valid"
            " Dockerfile to build your application or contact the support.",
            _CANT_BUILD + ": ERROR: No buildpack groups passed detection. ERROR: failed to detect: no"
            " buildpacks participating (builder {builder}, status code 20). Please do provide a valid"
            " Dockerfile to build your application or contact the support.",
            _CANT_BUILD + ": none of the builders {builders} could detect the language of your application"
            " in {app_root}. Please do provide a valid Dockerfile to build your application or contact the"
            " support.",
        ),
        hints=(
            "None builders supports Your application can't be built without providing a Dockerfile",
            "None builders supports your application. It can't be built without providing a Dockerfile",
        ),
    ),
    RootCause(
        name="kubernetes_probe_failed",
        share=0.165,
        state="DEPLOYMENT_ERROR",
        target=_APPLICATION,
        variants=(
            _NOT_STARTED + ": Liveness probe failed: dial tcp {ip}:{port}: connect: connection refused",
            _NOT_STARTED + ': Readiness probe failed: Get "http://{ip}:{port}/{health_path}": dial tcp'
            " {ip}:{port}: connect: connection refused",
            _NOT_STARTED + ": Liveness probe failed: HTTP probe failed with statuscode: {probe_status}",
            _NOT_STARTED + ': Readiness probe failed: Get "http://{ip}:{port}/{health_path}": context'
            " deadline exceeded (Client.Timeout exceeded while awaiting headers)",
            _NOT_STARTED + ": pod {pod} is not ready: Startup probe failed: dial tcp {ip}:{port}: i/o"
            " timeout",
        ),
        hints=(
            "Qovery can't reach your application. Check that the port declared in the application settings"
            " is the one your application listens on, and that it listens on 0.0.0.0 and not on localhost",
        ),
    ),
    RootCause(
        name="oom_killed",
        share=0.090,
        state="DEPLOYMENT_ERROR",
        target=_APPLICATION,
        variants=(
            _STOPPED + ": container {app} in pod {pod} was OOMKilled (exit code 137), memory limit {memory}",
            _STOPPED + ": pod {pod} exceeded its memory limit of {memory} and was killed by Kubernetes",
            _NOT_STARTED + ": container {app} terminated at {timestamp} with reason OOMKilled, exit code 137,"
            " restarts: {restarts}",
            _NOT_STARTED + ": FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of"
            " memory (memory limit {memory})",
            _NOT_STARTED + ': Exception in thread "main" java.lang.OutOfMemoryError: Java heap space'
            " (memory limit {memory})",
        ),
        hints=(
            "Your application uses more memory than its limit. Increase the memory of the application in"
            " its settings or reduce its memory usage",
        ),
    ),
    RootCause(
        name="app_crash_on_startup",
        share=0.080,
        state="DEPLOYMENT_ERROR",
        target=_APPLICATION,
        variants=(
            _CRASHED + ": container {app} in pod {pod} exited with code {exit_code}: CrashLoopBackOff",
            _CRASHED + ": back-off restarting failed container {app} in pod {pod} (restarted {restarts}"
            " times, last exit code {exit_code})",
            _CRASHED + ": Error: Cannot find module '/app/{js_path}' at Function.Module._resolveFilename"
            " (node:internal/modules/cjs/loader:{line}:{column})",
            _CRASHED + ': Traceback (most recent call last): File "/app/{py_path}", line {line}, in <module>'
            " ModuleNotFoundError: No module named '{py_module}'",
        ),
        hints=(
            "Your application stops right after starting. Look at its logs in the Qovery console and run it"
            " locally with `qovery run` to find the error",
            "Your application exits right after starting. Check its logs and run it locally with"
            " `qovery run` to reproduce the crash",
        ),
    ),
    RootCause(
        name="deployment_timeout",
        share=0.070,
        state="DEPLOYMENT_ERROR",
        target=_APPLICATION,
        variants=(
            _TIMED_OUT + " after {timeout} seconds: pod {pod} is still Pending since {timestamp}",
            _TIMED_OUT + ' after {timeout} seconds: Waiting for deployment "{app}" rollout to finish:'
            " {ready} of {replicas} updated replicas are available",
            _TIMED_OUT + ": helm upgrade --install {app} failed: timed out waiting for the condition"
            " ({timeout}s)",
            _TIMED_OUT + " after {timeout} seconds: pod {pod} is still ContainerCreating: pulling image"
            ' "{registry}/{app}:{git_sha}"',
        ),
        hints=(
            "Your application took too long to be up and running. Check its logs, and increase the"
            " deployment timeout in the advanced settings if it is slow to start",
        ),
    ),
    RootCause(
        name="image_push_failed",
        share=0.065,
        state="BUILD_ERROR",
        target=_BUILD_PLATFORM,
        variants=(
            _PUSH_ERROR + ": {registry}/{app}:{git_sha}: blob upload unknown to registry",
            _PUSH_ERROR + ": denied: Your authorization token has expired. Reauthenticate and try again.",
            _PUSH_ERROR + ': Put "https://{registry}/v2/{app}/blobs/uploads/{request_id}": net/http: TLS'
            " handshake timeout",
            _PUSH_ERROR + ": received unexpected HTTP status: 500 Internal Server Error after {duration}"
            " seconds (layer sha256:{layer_digest})",
        ),
        hints=(
            "The container registry rejected or dropped the image push. It is usually transient: redeploy"
            " your application and contact the support if it keeps happening",
        ),
    ),
    RootCause(
        name="buildpack_build_failed",
        share=0.060,
        state="BUILD_ERROR",
        target=_BUILD_PLATFORM,
        variants=(
            _BUILDPACKS_FAILED + " with builder {builder}: ERROR: failed to build: executing lifecycle."
            " This may be the result of using an untrusted builder: failed with status code: 51",
            _BUILDPACKS_FAILED + ": [builder] heroku/nodejs-engine: Unable to resolve node version"
            " '{node_version}' from the engines field of /workspace/package.json",
            _BUILDPACKS_FAILED + ": [builder] heroku/python: ERROR: Could not find a version that"
            " satisfies the requirement {py_requirement} (from -r requirements.txt (line {line}))",
            _BUILDPACKS_FAILED + ": [builder] heroku/jvm: [ERROR] Failed to execute goal"
            " org.apache.maven.plugins:maven-compiler-plugin:3.8.1:compile (default-compile) on project"
            " {app}: Compilation failure: /workspace/src/main/java/App.java:[{line},{column}] cannot find"
            " symbol",
        ),
        hints=(
            "Buildpacks recognized your application but its build failed. Check the build logs and build it"
            " locally with `pack build --builder heroku/buildpacks:20`, or provide a Dockerfile",
        ),
    ),
    RootCause(
        name="buildpack_multiple_processes",
        share=0.060,
        state="DEPLOYMENT_ERROR",
        target=_APPLICATION,
        variants=(
            _NOT_STARTED + ": ERROR: failed to launch: determine start command: when there is no default"
            " process a command is required",
            _NOT_STARTED + ": ERROR: failed to launch: determine start command: process type web was not"
            " found (Procfile defines: {processes})",
            _NOT_STARTED + ": the buildpacks image defines {n_processes} processes ({processes}) and none of"
            " them is the default process",
            _NOT_STARTED + ": container {app} in pod {pod} exited with code 1: ERROR: failed to launch:"
            " determine start command: when there is no default process a command is required",
        ),
        hints=(
            "Your application declares more than one process in its Procfile and buildpacks can't tell which"
            " one to run. Keep a single `web` process or set the entrypoint in the application settings",
        ),
    ),
    RootCause(
        name="dockerfile_build_error",
        share=0.050,
        state="BUILD_ERROR",
        target=_BUILD_PLATFORM,
        variants=(
            _DOCKER_BUILD_ERROR + " SimpleError {{ kind: Command(ExitStatus(ExitStatus(256))), message:"
            ' Some("error while executing an internal command") }}',
            _DOCKER_BUILD_ERROR + ' failed to solve: process "/bin/sh -c {build_command}" did not complete'
            " successfully: exit code: {exit_code}",
            _DOCKER_BUILD_ERROR + ' failed to solve: failed to compute cache key: "/{copy_path}" not found:'
            " not found",
            _DOCKER_BUILD_ERROR + " dockerfile parse error line {line}: unknown instruction: {instruction}",
        ),
        hints=(
            "It looks like there is something wrong in your Dockerfile. Try run locally using `qovery run`"
            " or build with `docker build --no-cache`",
        ),
    ),
    RootCause(
        name="custom_domain_certificate",
        share=0.050,
        state="DEPLOYMENT_ERROR",
        target=_APPLICATION,
        variants=(
            "Custom domain {domain} of application {app} ({zid}) is not ready: the CNAME record of {domain}"
            " does not point to {qovery_domain}",
            _NO_CERTIFICATE + ": acme: error: 403 :: urn:ietf:params:acme:error:unauthorized :: Invalid"
            " response from http://{domain}/.well-known/acme-challenge/{acme_token}: 404",
            _NO_CERTIFICATE + ": acme: error: 429 :: urn:ietf:params:acme:error:rateLimited :: too many"
            " certificates already issued for exact set of domains: {domain}",
            _NO_CERTIFICATE + ": certificate {app}-tls is not ready after {duration} seconds: DNS problem:"
            " NXDOMAIN looking up A for {domain}",
        ),
        hints=(
            "Check the DNS configuration of your custom domain: it needs a CNAME record pointing to the"
            " domain shown in the Qovery console, and DNS changes can take a while to propagate",
        ),
    ),
    RootCause(
        name="database_provisioning_failed",
        share=0.045,
        state="DEPLOYMENT_ERROR",
        target=_DATABASE,
        # Every variant names the endpoint, so the share of leaked passwords is the endpoint's.
        variants=(
            "Database {app} ({zid}) is not reachable after deployment: could not connect to {db_endpoint}:"
            " connection timed out after {duration} seconds",
            "Database {app} ({zid}) can't be deployed: error while creating RDS instance {zid} for"
            " {db_endpoint}: InvalidParameterCombination: RDS does not support creating a DB instance with"
            " the following combination: DBInstanceClass={db_class}, Engine=postgres,"
            " EngineVersion={pg_version}",
            "Database {app} ({zid}) can't be deployed: StatefulSet {app} is not ready after {duration}"
            " seconds (pod {app}-0 Pending: pod has unbound immediate PersistentVolumeClaims), {db_endpoint}"
            " unavailable",
            "Database {app} ({zid}) can't be initialized: psql {db_endpoint} failed: FATAL: password"
            ' authentication failed for user "admin"',
        ),
        hints=(
            "Your database couldn't be deployed or reached. Check its settings (version, instance type, disk"
            " size) and the limits of your cloud account, then redeploy it",
        ),
    ),
    RootCause(
        name="env_var_missing",
        share=0.038,
        state="DEPLOYMENT_ERROR",
        target=_APPLICATION,
        variants=(
            _CRASHED + ": Error: Missing required environment variable {env_var}",
            _CRASHED + ": KeyError: '{env_var}' in File \"/app/{py_path}\", line {line}",
            _NOT_DEPLOYED + ": environment variable alias {env_var} points to {other_env_var}, which does"
            " not exist in this environment",
            _CRASHED + ": panic: required environment variable {env_var} is empty goroutine 1 [running]:"
            " main.mustEnv(...) /src/{go_path}:{line}",
        ),
        hints=(
            "Your application expects an environment variable or a secret that isn't defined. Add it in the"
            " Variables section of the application or the environment and redeploy",
        ),
    ),
    RootCause(
        name="cloud_quota_exceeded",
        share=0.018,
        state="DEPLOYMENT_ERROR",
        target=_APPLICATION,
        variants=(
            _NOT_DEPLOYED + ": cloud provider limit reached in {region}: VcpuLimitExceeded: You have"
            " requested more vCPU capacity than your current vCPU limit of {vcpu_limit} allows",
            _NOT_DEPLOYED + ": error creating load balancer in {region}: TooManyLoadBalancers: Exceeded"
            " quota of account {aws_account}",
            _NOT_DEPLOYED + ": error allocating Elastic IP in {region}: AddressLimitExceeded: The maximum"
            " number of addresses has been reached.",
            _NOT_DEPLOYED + ": 0/{nodes} nodes are available: {nodes} Insufficient cpu, and the cluster"
            " can't scale up: max node group size {nodes} reached in {region}",
        ),
        hints=(
            "Your cloud provider account reached one of its limits. Ask your cloud provider to raise the"
            " quota or remove resources you no longer use",
        ),
    ),
    RootCause(
        name="git_clone_failed",
        share=0.016,
        state="BUILD_ERROR",
        target=_BUILD_PLATFORM,
        # Every variant names the repository, so the share of leaked tokens is the URL's.
        variants=(
            _CLONE_ERROR + ": fatal: could not read Username for 'https://{git_host}': terminal prompts"
            " disabled",
            _CLONE_ERROR + ": remote: Repository not found. fatal: repository '{repo_url}' not found",
            _CLONE_ERROR + ": error: RPC failed; curl 92 HTTP/2 stream 0 was not closed cleanly: CANCEL (err"
            " 8) fatal: early EOF",
            "error while checking out commit {git_sha} of {repo_url} for {app} ({zid}): fatal: reference is"
            " not a tree: {git_sha}",
        ),
        hints=(
            "Qovery can't access your Git repository. Check that the repository and the commit still exist"
            " and that the Qovery Git application is allowed to read it",
        ),
    ),
    RootCause(
        name="internal_api_error",
        share=0.013,
        state="DEPLOYMENT_ERROR",
        target=_APPLICATION,
        # Every variant ends with the request echo, so the share of leaked tokens is the echo's.
        variants=(
            "Qovery API returned an error while updating the status of application {app} ({zid}): 500"
            " Internal Server Error (request_id: {request_id}){auth_echo}",
            "error while calling Qovery API GET https://api.qovery.com/application/{other_uuid}/environment:"
            " 502 Bad Gateway (request_id: {request_id}){auth_echo}",
            "Qovery API timed out after {duration} seconds while fetching the configuration of {app} ({zid})"
            " (request_id: {request_id}){auth_echo}",
            "Qovery API rejected the deployment status of {app} ({zid}): 409 Conflict: execution"
            " {execution_id} is not the current one (request_id: {request_id}){auth_echo}",
        ),
        hints=(
            "This is an internal error of Qovery, not a problem with your application. Retry the deployment;"
            " the Qovery team has been notified",
        ),
    ),
    RootCause(
        name="engine_panic",
        share=0.010,
        state="DEPLOYMENT_ERROR",
        target=_APPLICATION,
        variants=(
            _ENGINE_PANICKED + " 'main' panicked at 'called `Option::unwrap()` on a `None` value',"
            " src/cloud_provider/kubernetes.rs:{line}:{column}",
            _ENGINE_PANICKED + " 'tokio-runtime-worker' panicked at 'called `Result::unwrap()` on an `Err`"
            ' value: Os {{ code: 2, kind: NotFound, message: "No such file or directory" }}\','
            " src/cmd/helm.rs:{line}:{column}",
            _ENGINE_PANICKED + " 'main' panicked at 'index out of bounds: {out_of_bounds}',"
            " src/cloud_provider/service.rs:{line}:{column}",
            _ENGINE_PANICKED + " 'main' panicked at 'attempt to subtract with overflow',"
            " src/build_platform/local_docker.rs:{line}:{column}",
        ),
        hints=(
            "This is a bug in the Qovery Engine, not in your application. Retry the deployment and contact"
            " the support with the Execution ID if it happens again",
        ),
    ),
)

# The demo's story over its 14 days (`story=True`): what a catalog of error groups should tell.
_PULL_FAILED = "Kubernetes can't pull the container image of application {app} ({zid})"
REGISTRY_CREDENTIALS_EXPIRED = RootCause(
    name="registry_credentials_expired",
    share=0.030,  # of the day's errors, on the days it happens
    state="DEPLOYMENT_ERROR",
    target=_APPLICATION,
    variants=(
        _PULL_FAILED + ': Failed to pull image "{registry}/{app}:{git_sha}": rpc error: code = Unknown desc ='
        " failed to authorize: failed to fetch oauth token: unexpected status: 401 Unauthorized",
        _PULL_FAILED + ": ErrImagePull: pull access denied for {registry}/{app}, repository does not exist or"
        " may require 'docker login': denied: requested access to the resource is denied",
        _PULL_FAILED + ": ImagePullBackOff: Back-off pulling image {registry}/{app}:{git_sha}: the registry"
        " answered 403 Forbidden: token expired",
    ),
    hints=(
        "Qovery can't pull your image: the credentials of your container registry have expired. Update them"
        " in your organization's container registry settings",
    ),
)


@dataclass(frozen=True)
class DemoStory:
    """The hidden truth of the story, days counted from 1 (the first generated day)."""

    new_cause: str = REGISTRY_CREDENTIALS_EXPIRED.name
    new_from_day: int = 12  # appears on day 12 and stays
    growing_cause: str = "oom_killed"
    growth: float = 3.0  # its weight from day 12 on, times its share before
    growing_from_day: int = 12
    stopped_cause: str = "git_clone_failed"
    stopped_after_day: int = 9  # none from day 10 on

    def weight(self, cause: RootCause, day: int) -> float:
        """The cause's weight among the day's errors (its share, changed as the story says)."""
        if cause.name == self.new_cause:
            return cause.share if day >= self.new_from_day else 0.0
        if cause.name == self.stopped_cause and day > self.stopped_after_day:
            return 0.0
        if cause.name == self.growing_cause and day >= self.growing_from_day:
            return cause.share * self.growth
        return cause.share


DEMO_STORY = DemoStory()


# The seed does not count non-error events; 1.5 per error keeps errors a minority of the store, as
# in a platform where most deployments succeed.
_INFO_EVENTS_PER_ERROR = 1.5
# (state, target, message template, weight): the lifecycle events that share batches with the errors.
_INFO_EVENTS: tuple[tuple[str, str, str, float], ...] = (
    ("DEPLOYMENT_QUEUED", _BUILD_PLATFORM, "Deployment of {app} queued", 3.0),
    ("BUILDING", _BUILD_PLATFORM, "Build of {app} ({zid}) started", 2.0),
    ("BUILT", _BUILD_PLATFORM, "Container image {app}:{git_sha} built in {duration} seconds", 2.0),
    ("DEPLOYING", _APPLICATION, "Deployment of {app} started", 3.0),
    ("DEPLOYED", _APPLICATION, "Application {app} ({zid}) deployed in {duration} seconds", 3.0),
    ("STOPPED", _APPLICATION, "Application {app} ({zid}) stopped", 1.0),
    ("DEPLOYING", _DATABASE, "Deployment of database {app} started", 0.5),
    ("DEPLOYED", _DATABASE, "Database {app} ({zid}) deployed", 0.5),
)

# Secrets that leak into messages, for the redaction tests downstream.
_GIT_CREDENTIALS_SHARE = 0.20
_DB_PASSWORD_SHARE = 0.20
_BEARER_ECHO_SHARE = 0.10

_MAX_BATCH_EVENTS = 50
_MEAN_BATCH_EVENTS = 8
_WEEKEND_VOLUME = 0.45  # relative to a weekday: fewer people deploy on weekends
_HOUR_US = 3_600_000_000  # microseconds: batch timestamps keep the database's precision
# Deploys follow European and American working hours (UTC).
_HOUR_WEIGHTS = (
    3, 2, 2, 2, 2, 3, 5, 8, 11, 13, 14, 14, 12, 14, 15, 15, 14, 12, 10, 8, 7, 6, 5, 4,
)  # fmt: skip

_APP_WORDS = (
    "beta", "billing", "shop", "auth", "payment", "user", "order", "inventory", "search", "notification",
    "analytics", "checkout", "catalog", "cart", "admin", "report", "media", "email", "chat", "gateway",
    "ledger", "invoice", "profile", "booking", "shipping", "pricing", "review", "stream", "event", "landing",
)  # fmt: skip
_APP_KINDS = (
    "api", "build", "frontend", "backend", "worker", "service", "web", "app", "cron", "consumer",
    "dashboard", "server", "scheduler", "bot", "proxy",
)  # fmt: skip
_DB_KINDS = ("db", "postgres", "postgresql", "pg", "database")  # the provisioning errors are PostgreSQL ones
_SEED_APP = "beta-build"  # the app of the seed's examples
_N_APPS = 150
_N_DATABASES = 40
_ZIPF_EXPONENT = 0.9  # a few apps fail over and over, as users retry a broken deploy

_ORGS = (
    "acme-corp", "nimbus-labs", "bluefin-hq", "orbital-io", "kettle-dev", "pinecone-tech", "lumen-app",
    "quartz-studio", "harbor-data", "fable-games", "tinyfox", "northwind",
)  # fmt: skip
_AWS_REGIONS = (
    "eu-west-3", "us-east-1", "eu-west-1", "eu-central-1", "us-west-2", "ap-southeast-1", "ca-central-1",
    "eu-north-1",
)  # fmt: skip
_DOMAIN_WORDS = ("kettle", "orbit", "lumen", "fable", "pixel", "harbor", "nimbus", "quill", "ember", "tidal")
_TLDS = ("com", "io", "dev", "app", "fr", "co")
_ALNUM = string.ascii_letters + string.digits
_BASE64URL = _ALNUM + "-_"
_POD_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes uses for generated name suffixes


STORY_CAUSES = (*ROOT_CAUSES, REGISTRY_CREDENTIALS_EXPIRED)


def _pick(options: Sequence) -> Callable[["_Fields"], object]:
    return lambda f: f.rng.choice(options)


def _between(low: int, high: int) -> Callable[["_Fields"], int]:
    return lambda f: f.rng.randint(low, high)


def _chars(rng: random.Random, alphabet: str, k: int) -> str:
    return "".join(rng.choices(alphabet, k=k))


def _hex(rng: random.Random, k: int) -> str:
    return f"{rng.getrandbits(4 * k):0{k}x}"


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class _Fields(dict):
    """The placeholder values of one message, drawn on first use so a repeated placeholder repeats."""

    def __init__(self, rng: random.Random, **known: object) -> None:
        super().__init__(known)
        self.rng = rng

    def __missing__(self, key: str) -> object:
        value = _FIELD_MAKERS[key](self)
        self[key] = value
        return value


def _timestamp(f: _Fields) -> str:
    moment = datetime.fromtimestamp(f["epoch"] - f.rng.randint(0, 900), UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _registry(f: _Fields) -> str:
    if f.rng.random() < 0.8:
        return f"{f['aws_account']}.dkr.ecr.{f['region']}.amazonaws.com"
    return f"rg.{f.rng.choice(('fr-par', 'nl-ams', 'pl-waw'))}.scw.cloud/qovery-{f['zid']}"


def _repo_url(f: _Fields) -> str:
    repo = f["app"] if f.rng.random() < 0.7 else f.rng.choice(("backend", "monorepo", "platform", "web"))
    if f.rng.random() < _GIT_CREDENTIALS_SHARE:
        return f"https://oauth2:ghp_{_chars(f.rng, _ALNUM, 36)}@github.com/{f['org']}/{repo}.git"
    host = f.rng.choice(("github.com", "github.com", "gitlab.com", "bitbucket.org"))
    return f"https://{host}/{f['org']}/{repo}.git"


def _db_endpoint(f: _Fields) -> str:
    cluster = _chars(f.rng, string.ascii_lowercase + string.digits, 12)
    host = f"{f['zid']}.{cluster}.{f['region']}.rds.amazonaws.com"
    if f.rng.random() < _DB_PASSWORD_SHARE:
        name = f["app"].replace("-", "_")
        return f"postgresql://admin:{_chars(f.rng, _ALNUM, f.rng.randint(16, 24))}@{host}:5432/{name}"
    return f"{host}:5432"


def _auth_echo(f: _Fields) -> str:
    if f.rng.random() < _BEARER_ECHO_SHARE:
        # A JWT: the header is base64url of {"alg":"RS256","typ":"JWT"}.
        claims, signature = _chars(f.rng, _BASE64URL, 96), _chars(f.rng, _BASE64URL, 43)
        token = f"eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.{claims}.{signature}"
        return f" (request headers: Authorization: Bearer {token})"
    return ""


def _ready(f: _Fields) -> int:
    return f.rng.randint(0, f["replicas"] - 1)


def _out_of_bounds(f: _Fields) -> str:
    length = f.rng.randint(0, 8)
    return f"the len is {length} but the index is {f.rng.randint(length, length + 4)}"


_FIELD_MAKERS: dict[str, Callable[[_Fields], object]] = {
    "acme_token": lambda f: _chars(f.rng, _BASE64URL, 43),
    "app_root": _pick(("/workspace", "/workspace/app", "/workspace/src", "/workspace/backend")),
    "auth_echo": _auth_echo,
    "aws_account": lambda f: str(f.rng.randint(10**11, 10**12 - 1)),
    "build_command": _pick(
        (
            "npm ci --only=production",
            "yarn install --frozen-lockfile",
            "pip install -r requirements.txt",
            "go build -o /app ./...",
            "./gradlew build -x test",
            "mvn -B package -DskipTests",
            "bundle install",
            "composer install --no-dev",
        )
    ),
    "builder": _pick(("heroku/buildpacks:20", "heroku/builder:22", "paketobuildpacks/builder:base")),
    "builders": _pick(
        (
            "heroku/buildpacks:20, heroku/builder-classic:22",
            "heroku/builder:22, paketobuildpacks/builder:base",
            "paketobuildpacks/builder:full, gcr.io/buildpacks/builder:v1",
            "heroku/buildpacks:18, heroku/buildpacks:20",
        )
    ),
    "column": _between(1, 80),
    "copy_path": _pick(
        (
            "package-lock.json",
            "requirements.txt",
            "dist",
            "yarn.lock",
            "go.sum",
            "build/libs/app.jar",
            "config/nginx.conf",
        )
    ),
    "db_class": _pick(("db.t2.micro", "db.t3.micro", "db.t4g.medium", "db.m5.large")),
    "db_endpoint": _db_endpoint,
    "domain": lambda f: (
        f"{f.rng.choice(('www', 'api', 'app', 'admin', 'dashboard', f['app']))}."
        f"{f.rng.choice(_DOMAIN_WORDS)}{f.rng.choice(_DOMAIN_WORDS)}.{f.rng.choice(_TLDS)}"
    ),
    "duration": _between(3, 900),
    "env_var": _pick(
        (
            "DATABASE_URL",
            "REDIS_URL",
            "SECRET_KEY",
            "JWT_SECRET",
            "STRIPE_API_KEY",
            "SENTRY_DSN",
            "AWS_S3_BUCKET",
            "SMTP_HOST",
            "API_BASE_URL",
            "MONGO_URI",
            "RABBITMQ_URL",
            "NEXT_PUBLIC_API_URL",
        )
    ),
    "exit_code": _pick((1, 1, 1, 2, 126, 127, 134, 139, 255)),
    "git_sha": lambda f: _hex(f.rng, 40),
    "git_host": lambda f: urlsplit(f["repo_url"]).hostname,
    "go_path": _pick(("cmd/server/main.go", "main.go", "internal/config/config.go")),
    "health_path": _pick(("healthz", "health", "api/health", "ready", "status", "actuator/health")),
    "instruction": _pick(("COPPY", "RUNN", "EXPOSE8080", "ENTRYPOINT[npm", "ENV_FILE", "FORM")),
    "ip": lambda f: f"10.{f.rng.randint(0, 255)}.{f.rng.randint(0, 255)}.{f.rng.randint(2, 254)}",
    "js_path": _pick(("dist/index.js", "build/server.js", "src/main.js", "server.js", "dist/main.js")),
    "layer_digest": lambda f: _hex(f.rng, 64),
    "line": _between(1, 400),
    "memory": _pick(("128Mi", "256Mi", "512Mi", "768Mi", "1Gi", "2Gi", "4Gi")),
    "n_processes": _between(2, 4),
    "node_version": _pick((">=18.0.0 <19", "16.x", "^20.5", "21.1.0", "lts/*")),
    "nodes": _between(3, 12),
    "out_of_bounds": _out_of_bounds,
    "org": _pick(_ORGS),
    "other_env_var": _pick(("DB_URL", "POSTGRES_URL", "REDIS_HOST", "APP_SECRET", "S3_BUCKET_NAME")),
    "other_uuid": lambda f: _uuid(f.rng),
    "pg_version": _pick(("9.6.24", "10.21", "11.16", "12.11", "13.7", "14.4")),
    "pod": lambda f: f"{f['app']}-{_chars(f.rng, _POD_ALPHABET, 10)}-{_chars(f.rng, _POD_ALPHABET, 5)}",
    "port": _pick((80, 3000, 3001, 4000, 5000, 5173, 8000, 8080, 8081, 8443, 9000, 1337)),
    "probe_status": _pick((404, 500, 502, 503)),
    "processes": _pick(("web, worker", "web, worker, release", "api, worker, scheduler", "worker, clock")),
    "py_module": _pick(("flask", "django", "uvicorn", "psycopg2", "dotenv", "fastapi", "gunicorn")),
    "py_path": _pick(("app/main.py", "main.py", "src/server.py", "manage.py", "config/settings.py")),
    "py_requirement": _pick(
        (
            "tensorflow==2.3.0",
            "torch==1.7.1",
            "psycopg2-binary==2.8.6",
            "numpy==1.19.5",
            "Django==2.2.28",
        )
    ),
    "qovery_domain": lambda f: f"{f['app']}-{f['zid']}.{f['region']}.qovery.io",
    "ready": _ready,
    "region": _pick(_AWS_REGIONS),
    "registry": _registry,
    "replicas": _between(2, 6),
    "repo_url": _repo_url,
    "request_id": lambda f: _uuid(f.rng),
    "restarts": _between(3, 40),
    "timeout": _pick((300, 600, 900, 1200)),
    "timestamp": _timestamp,
    "vcpu_limit": _pick((16, 32, 64, 128)),
}


@dataclass(frozen=True)
class _Service:
    name: str
    zid: str  # a Qovery id: one per environment the service is deployed in


def _services(rng: random.Random, names: list[str]) -> tuple[list[_Service], list[float]]:
    """Services with 1 to 3 environments each, and Zipf cumulative weights for drawing them."""
    services = [_Service(name, f"z{_hex(rng, 8)}") for name in names for _ in range(rng.randint(1, 3))]
    rng.shuffle(services)
    cumulative, total = [], 0.0
    for rank in range(1, len(services) + 1):
        total += rank**-_ZIPF_EXPONENT
        cumulative.append(total)
    return services, cumulative


def _app_names(rng: random.Random) -> list[str]:
    combos = [f"{word}-{kind}" for word in _APP_WORDS for kind in _APP_KINDS if f"{word}-{kind}" != _SEED_APP]
    return [_SEED_APP, *rng.sample(combos, _N_APPS - 1)]


def _database_names(rng: random.Random) -> list[str]:
    return rng.sample([f"{word}-{kind}" for word in _APP_WORDS for kind in _DB_KINDS], _N_DATABASES)


def _apportion(total: int, weights: Sequence[float]) -> list[int]:
    """Split `total` in proportion to `weights`, rounding so the parts sum exactly to `total`."""
    quotas = [total * w / sum(weights) for w in weights]
    counts = [int(q) for q in quotas]
    # Largest remainders first: each part ends at the floor or ceiling of its quota.
    by_remainder = sorted(range(len(quotas)), key=lambda i: quotas[i] - counts[i], reverse=True)
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _batch_sizes(rng: random.Random, n_events: int) -> list[int]:
    sizes = []
    while n_events > 0:
        size = min(_MAX_BATCH_EVENTS, 1 + int(rng.expovariate(1 / (_MEAN_BATCH_EVENTS - 1))), n_events)
        sizes.append(size)
        n_events -= size
    return sizes


def _execution_id(rng: random.Random, epoch: int) -> str:
    # Engine format: a uuid, the attempt number, the unix time the execution started.
    return f"{_uuid(rng)}-{rng.randint(1, 30)}-{epoch - rng.randint(5, 600)}"


def _event(
    rng: random.Random,
    service: _Service,
    epoch: int,
    state: str,
    target: str,
    template: str,
    cause: RootCause | None,
) -> dict:
    execution_id = _execution_id(rng, epoch)
    fields = _Fields(rng, app=service.name, zid=service.zid, execution_id=execution_id, epoch=epoch)
    message = template.format_map(fields)
    if cause is not None:
        hint = cause.hints[0] if len(cause.hints) == 1 or rng.random() < 0.8 else rng.choice(cause.hints[1:])
        scope_line = f"{target} '{service.name}' with id '{service.zid}'"
        message = frame_message(execution_id, scope_line, message, hint)
    return {
        "scope": _EVENT_SCOPE[target],
        "state": state,
        "message": message,
        "execution_id": execution_id,
        "root_cause": None if cause is None else cause.name,
    }


def _utc_midnight(end: datetime) -> datetime:
    if end.utcoffset() is None:
        raise ValueError(f"end={end.isoformat()} is naive; pass a timezone-aware UTC midnight")
    end = end.astimezone(UTC)
    if end != end.replace(hour=0, minute=0, second=0, microsecond=0):
        raise ValueError(f"end={end.isoformat()} is not a UTC midnight; pass the day after the last day")
    return end


def generate_deployment_batches(
    end: datetime,
    days: int = 14,
    n_error_events: int = 20_000,
    seed: int = 7,
    story: bool = False,
) -> list[dict]:
    """Rows of the `deployment_events` table for the `days` UTC days before `end` (exclusive midnight).

    Each row is {"id", "created_at", "payload"}: one batch of 1 to 50 events as a JSON array. Each root
    cause gets exactly its share of `n_error_events` (largest remainder rounding), and about 1.5
    lifecycle events per error share the batches. Same arguments, same rows.

    With `story`, each day's errors are split among the causes by `DEMO_STORY`'s weights instead (the
    demo's: a cause new on day 12, one three times its share from day 12, one gone after day 9), so
    the causes' totals no longer follow their shares exactly; the days' totals still do.
    """
    if days < 1:
        raise ValueError(f"days={days}; generate at least one day")
    if n_error_events < 0:
        raise ValueError(f"n_error_events={n_error_events}; pass zero or more")
    start = _utc_midnight(end) - timedelta(days=days)
    rng = random.Random(seed)
    apps = _services(rng, _app_names(rng))
    pools = {_BUILD_PLATFORM: apps, _APPLICATION: apps, _DATABASE: _services(rng, _database_names(rng))}

    counts = _apportion(n_error_events, [cause.share for cause in ROOT_CAUSES])
    causes = [cause for cause, count in zip(ROOT_CAUSES, counts, strict=True) for _ in range(count)]
    rng.shuffle(causes)
    day_starts = [start + timedelta(days=d) for d in range(days)]
    day_weights = [
        (_WEEKEND_VOLUME if day.weekday() >= 5 else 1.0) * rng.uniform(0.75, 1.25) for day in day_starts
    ]
    errors_per_day = _apportion(n_error_events, day_weights)
    infos_per_day = _apportion(round(_INFO_EVENTS_PER_ERROR * n_error_events), day_weights)
    info_weights = [weight for *_, weight in _INFO_EVENTS]

    rows: list[dict] = []
    taken = 0
    for day, n_errors, n_infos in zip(day_starts, errors_per_day, infos_per_day, strict=True):
        # None marks a non-error event; mixing them before cutting batches spreads errors over batches.
        if story:
            number = (day - start).days + 1
            weights = [DEMO_STORY.weight(cause, number) for cause in STORY_CAUSES]
            day_causes = [
                cause
                for cause, count in zip(STORY_CAUSES, _apportion(n_errors, weights), strict=True)
                for _ in range(count)
            ]
        else:
            day_causes = causes[taken : taken + n_errors]
        slots: list[RootCause | None] = [*day_causes, *([None] * n_infos)]
        taken += n_errors
        rng.shuffle(slots)
        sizes = _batch_sizes(rng, len(slots))
        hours = rng.choices(range(24), weights=_HOUR_WEIGHTS, k=len(sizes))
        offsets = sorted(hour * _HOUR_US + rng.randrange(_HOUR_US) for hour in hours)
        first = 0
        for size, offset in zip(sizes, offsets, strict=True):
            created_at = day + timedelta(microseconds=offset)
            epoch = int(created_at.timestamp())
            events = []
            for cause in slots[first : first + size]:
                if cause is None:
                    state, target, template, _ = rng.choices(_INFO_EVENTS, weights=info_weights)[0]
                else:
                    state, target, template = cause.state, cause.target, rng.choice(cause.variants)
                services, cum_weights = pools[target]
                service = rng.choices(services, cum_weights=cum_weights)[0]
                events.append(_event(rng, service, epoch, state, target, template, cause))
            first += size
            rows.append({"id": len(rows) + 1, "created_at": created_at, "payload": json.dumps(events)})
    return rows
