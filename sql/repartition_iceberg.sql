-- The event-time table of the Iceberg lake, for one range of days, written
-- with MERGE INTO so that a rerun (or two runs of the same days) leaves the
-- table as one run does.
--
-- Rendered by start-queries (telemetry_lake::repartition) with LAKE_FORMAT
-- iceberg: every placeholder (a name in double braces) is filled by the
-- program, never with input text, as in repartition.sql.
--
--   database, source_table, target_table, reference_table  Glue names
--   range_start, range_end   the days written: eventtime in [range_start, range_end)
--   window_start             range_start minus the look-back: readings from here
--                            on feed the moving averages but are not written
--
-- The source is the Iceberg table kinesis-to-parquet commits to, already
-- partitioned by event time (a hidden partition), so the eventtime bounds
-- alone prune the scan: no arrival partitions to pick, and a reading that
-- arrived days late is read by any run covering its day. Times are UTC
-- (eventtime is a timestamptz, compared with the bounds in the session's
-- zone, UTC in Athena).
--
-- The target holds one row per device and event time, the MERGE's key: a
-- row of the range already there is updated (its status and averages as
-- this run computes them: a late reading changes its neighbours'), a new
-- one inserted, nothing else touched. A device sending two readings with
-- the same event time (a producer's resend) counts once: the source keeps
-- one row per key, before the averages, so that a resend does not weigh
-- twice in them either.
--
-- status and the moving averages are those of repartition.sql.
--
-- The SQL is the subset Athena (Trino) and DuckDB share; the tests run it in
-- DuckDB over the data files kinesis-to-parquet committed.
MERGE INTO "{{database}}"."{{target_table}}" AS t
USING (
    SELECT
        a.ventilatorid,
        a.eventtime,
        a.serialnumber,
        a.manufacturer,
        a.pressurecontrol,
        a.o2stats,
        a.minutevolume,
        CASE
            WHEN ref.ventilatorid IS NULL THEN 'UNKNOWN'
            WHEN (a.o2stats < ref.o2_stats_min OR a.o2stats > ref.o2_stats_max)
             AND (a.pressurecontrol < ref.pressure_control_min OR a.pressurecontrol > ref.pressure_control_max)
             AND (a.minutevolume < ref.minute_volume_min OR a.minutevolume > ref.minute_volume_max)
                THEN 'RED'
            WHEN a.o2stats BETWEEN ref.o2_stats_min AND ref.o2_stats_max
             AND a.pressurecontrol BETWEEN ref.pressure_control_min AND ref.pressure_control_max
             AND a.minutevolume BETWEEN ref.minute_volume_min AND ref.minute_volume_max
                THEN 'GREEN'
            ELSE 'ORANGE'
        END AS status,
        a.avg_o2stats_3,
        a.avg_pressurecontrol_3,
        a.avg_minutevolume_3,
        a.avg_o2stats_20,
        a.avg_pressurecontrol_20,
        a.avg_minutevolume_20
    FROM (
        SELECT
            r.*,
            -- Moving averages over the device's last 3 and 20 readings,
            -- this one included.
            avg(CAST(r.o2stats AS DOUBLE)) OVER (PARTITION BY r.ventilatorid ORDER BY r.eventtime ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS avg_o2stats_3,
            avg(CAST(r.pressurecontrol AS DOUBLE)) OVER (PARTITION BY r.ventilatorid ORDER BY r.eventtime ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS avg_pressurecontrol_3,
            avg(CAST(r.minutevolume AS DOUBLE)) OVER (PARTITION BY r.ventilatorid ORDER BY r.eventtime ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS avg_minutevolume_3,
            avg(CAST(r.o2stats AS DOUBLE)) OVER (PARTITION BY r.ventilatorid ORDER BY r.eventtime ROWS BETWEEN 19 PRECEDING AND CURRENT ROW) AS avg_o2stats_20,
            avg(CAST(r.pressurecontrol AS DOUBLE)) OVER (PARTITION BY r.ventilatorid ORDER BY r.eventtime ROWS BETWEEN 19 PRECEDING AND CURRENT ROW) AS avg_pressurecontrol_20,
            avg(CAST(r.minutevolume AS DOUBLE)) OVER (PARTITION BY r.ventilatorid ORDER BY r.eventtime ROWS BETWEEN 19 PRECEDING AND CURRENT ROW) AS avg_minutevolume_20
        FROM (
            SELECT
                d.ventilatorid,
                d.eventtime,
                d.serialnumber,
                d.manufacturer,
                d.pressurecontrol,
                d.o2stats,
                d.minutevolume,
                row_number() OVER (
                    PARTITION BY d.ventilatorid, d.eventtime
                    ORDER BY d.serialnumber, d.manufacturer, d.pressurecontrol, d.o2stats, d.minutevolume
                ) AS copy
            FROM "{{database}}"."{{source_table}}" AS d
            WHERE d.eventtime >= TIMESTAMP '{{window_start}}'
              AND d.eventtime < TIMESTAMP '{{range_end}}'
        ) AS r
        WHERE r.copy = 1
    ) AS a
    LEFT JOIN "{{database}}"."{{reference_table}}" AS ref
        ON ref.ventilatorid = a.ventilatorid
    WHERE a.eventtime >= TIMESTAMP '{{range_start}}'
) AS s
ON t.ventilatorid = s.ventilatorid AND t.eventtime = s.eventtime
WHEN MATCHED THEN UPDATE SET
    serialnumber = s.serialnumber,
    manufacturer = s.manufacturer,
    pressurecontrol = s.pressurecontrol,
    o2stats = s.o2stats,
    minutevolume = s.minutevolume,
    status = s.status,
    avg_o2stats_3 = s.avg_o2stats_3,
    avg_pressurecontrol_3 = s.avg_pressurecontrol_3,
    avg_minutevolume_3 = s.avg_minutevolume_3,
    avg_o2stats_20 = s.avg_o2stats_20,
    avg_pressurecontrol_20 = s.avg_pressurecontrol_20,
    avg_minutevolume_20 = s.avg_minutevolume_20
WHEN NOT MATCHED THEN INSERT (
    ventilatorid, eventtime, serialnumber, manufacturer, pressurecontrol, o2stats, minutevolume, status,
    avg_o2stats_3, avg_pressurecontrol_3, avg_minutevolume_3,
    avg_o2stats_20, avg_pressurecontrol_20, avg_minutevolume_20
) VALUES (
    s.ventilatorid, s.eventtime, s.serialnumber, s.manufacturer, s.pressurecontrol, s.o2stats, s.minutevolume, s.status,
    s.avg_o2stats_3, s.avg_pressurecontrol_3, s.avg_minutevolume_3,
    s.avg_o2stats_20, s.avg_pressurecontrol_20, s.avg_minutevolume_20
)
