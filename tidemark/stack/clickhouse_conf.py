"""Project-local config for the embedded ClickHouse server.

Starts from the distribution's own config.xml and changes only paths, the
listen host and the ports (verified to be all 18.16 needs to run unprivileged
of the system install). users.xml is ours: a writer (``default``, loopback
only) and two readonly serving users (one per query class: exports, and the
tighter dashboard class) whose profiles enforce a wall-clock query limit and
whose databases are restricted. Row policies are silently ignored by 18.16,
so tenant isolation is enforced by the serving layer, not here.

The serving profiles switch query logging off: clickhouse-driver inlines bound
values into the query text, and any readonly user can read ``system.query_log``,
so a logged API query would show one tenant's ids and filters to whoever holds
reader credentials.

What users.xml cannot do on 18.16: keep any user out of the ``system`` database
(``allow_databases`` does not apply to it), so each serving user can read the
other's running queries in ``system.processes``. The API therefore never puts a
tenant id or filter value in a query's text (tidemark/serving/queries.py sends
them as an external table); README "Serving" states what remains visible.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from xml.sax.saxutils import escape

from tidemark.config import ClickHouseSettings, ServingSettings

SYSTEM_CONFIG = Path("/etc/clickhouse-server/config.xml")

_MINIMAL = "<yandex><logger><level>warning</level></logger><mark_cache_size>536870912</mark_cache_size></yandex>"


def _set(root: ET.Element, path: str, value: str) -> None:
    node = root.find(path)
    if node is None:
        parent = root
        for part in path.split("/"):
            child = parent.find(part)
            if child is None:
                child = ET.SubElement(parent, part)
            parent = child
        node = parent
    node.text = value


def render(cfg: ClickHouseSettings, base: Path, serving: ServingSettings) -> Path:
    """Write config.xml and users.xml under ``base``; return the config path."""
    data = base / "data"
    for sub in ("data", "tmp", "user_files", "format_schemas", "log"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    root = ET.fromstring(SYSTEM_CONFIG.read_text()) if SYSTEM_CONFIG.exists() else ET.fromstring(_MINIMAL)
    for tag in ("listen_host", "https_port", "tcp_port_secure", "include_from", "zookeeper", "macros"):
        for node in root.findall(tag):
            root.remove(node)
    ET.SubElement(root, "listen_host").text = "127.0.0.1"
    _set(root, "tcp_port", str(cfg.port))
    _set(root, "http_port", str(cfg.http_port))
    _set(root, "interserver_http_port", str(cfg.interserver_port))
    _set(root, "path", f"{data}/")
    _set(root, "tmp_path", f"{base / 'tmp'}/")
    _set(root, "user_files_path", f"{base / 'user_files'}/")
    _set(root, "format_schema_path", f"{base / 'format_schemas'}/")
    _set(root, "users_config", str(base / "users.xml"))
    _set(root, "logger/log", str(base / "log" / "clickhouse-server.log"))
    _set(root, "logger/errorlog", str(base / "log" / "clickhouse-server.err.log"))
    _set(root, "logger/level", "warning")
    _set(root, "default_database", "default")
    config_path = base / "config.xml"
    ET.ElementTree(root).write(config_path, encoding="utf-8", xml_declaration=True)
    (base / "users.xml").write_text(users_xml(cfg, serving))
    return config_path


def _serving_profile(limit: int) -> str:
    return f"""<readonly>1</readonly>
      <max_execution_time>{int(limit)}</max_execution_time>
      <!-- Without this, 18.16 only checks the time limit after a speed estimate: a wall-clock limit needs 0. -->
      <timeout_before_checking_execution_speed>0</timeout_before_checking_execution_speed>
      <max_memory_usage>2000000000</max_memory_usage>
      <max_rows_to_read>500000000</max_rows_to_read>
      <!-- API queries carry tenant ids and filters inline; keep them out of system.query_log/query_thread_log. -->
      <log_queries>0</log_queries>
      <log_query_threads>0</log_query_threads>"""


def users_xml(cfg: ClickHouseSettings, serving: ServingSettings) -> str:
    limit = int(cfg.reader_max_execution_s)
    return f"""<?xml version="1.0"?>
<yandex>
  <profiles>
    <default>
      <max_memory_usage>4000000000</max_memory_usage>
      <load_balancing>random</load_balancing>
      <log_queries>1</log_queries>
    </default>
    <serving>
      {_serving_profile(limit)}
    </serving>
    <serving_dashboard>
      {_serving_profile(serving.dashboard_max_execution_s)}
    </serving_dashboard>
  </profiles>
  <users>
    <{cfg.user}>
      <password>{escape(cfg.password)}</password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </{cfg.user}>
    <{cfg.reader_user}>
      <password>{escape(cfg.reader_password)}</password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>serving</profile>
      <quota>serving</quota>
      <allow_databases><database>{escape(cfg.database)}</database></allow_databases>
    </{cfg.reader_user}>
    <{serving.dashboard_user}>
      <password>{escape(serving.dashboard_password)}</password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>serving_dashboard</profile>
      <quota>serving</quota>
      <allow_databases><database>{escape(cfg.database)}</database></allow_databases>
    </{serving.dashboard_user}>
  </users>
  <quotas>
    <default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default>
    <serving><interval><duration>60</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></serving>
  </quotas>
</yandex>
"""
