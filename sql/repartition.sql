-- Repartition of the raw ventilator lake by event time, for one range of days.
--
-- Rendered by start-queries (telemetry_lake::repartition): every placeholder
-- (a name in double braces) is filled by the program, never with input text. Table names are
-- checked identifiers from configuration; times and ingest days are
-- formatted from validated chrono dates.
--
--   database, source_table, target_table, reference_table  Glue names
--   range_start, range_end   the days written: eventtime in [range_start, range_end)
--   window_start             range_start minus the look-back: readings from here
--                            on feed the moving averages but are not written
--   ingest_partitions        the ingest (arrival) days to read
--
-- The source is partitioned by arrival time, the target by event time. A
-- reading of day D arrives on D, or on D+1 when it is late (around
-- midnight, or after a retry), so the scan is pruned to the ingest days
-- from the look-back's day to the range's last day plus one, and the rows
-- are then selected by eventtime. Readings arriving later than the end of
-- D+1 are not picked up by the run for D.
--
-- The target's partition columns (year, month, day, hour: event time, UTC)
-- come last, as INSERT INTO requires. One query writes (range_end -
-- range_start) * 24 hourly partitions: start-queries keeps that under
-- Athena's limit of 100 partitions per INSERT INTO.
--
-- status is the device-status rule: RED when all three readings are out of
-- the device's normal range, GREEN when all three are in it (bounds
-- inclusive), ORANGE otherwise, UNKNOWN when the reference table has no
-- row for the device. The reference table holds one row per ventilatorid.
--
-- The SQL is the subset Athena (Trino) and DuckDB share; the tests run it in
-- DuckDB over Parquet written by kinesis-to-parquet.
INSERT INTO "{{database}}"."{{target_table}}"
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
    a.avg_minutevolume_20,
    year(a.eventtime) AS "year",
    month(a.eventtime) AS "month",
    day(a.eventtime) AS "day",
    hour(a.eventtime) AS "hour"
FROM (
    SELECT
        r.ventilatorid,
        r.eventtime,
        r.serialnumber,
        r.manufacturer,
        r.pressurecontrol,
        r.o2stats,
        r.minutevolume,
        -- Moving averages over the device's last 3 and 20 readings,
        -- this one included.
        avg(CAST(r.o2stats AS DOUBLE)) OVER (PARTITION BY r.ventilatorid ORDER BY r.eventtime ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS avg_o2stats_3,
        avg(CAST(r.pressurecontrol AS DOUBLE)) OVER (PARTITION BY r.ventilatorid ORDER BY r.eventtime ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS avg_pressurecontrol_3,
        avg(CAST(r.minutevolume AS DOUBLE)) OVER (PARTITION BY r.ventilatorid ORDER BY r.eventtime ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS avg_minutevolume_3,
        avg(CAST(r.o2stats AS DOUBLE)) OVER (PARTITION BY r.ventilatorid ORDER BY r.eventtime ROWS BETWEEN 19 PRECEDING AND CURRENT ROW) AS avg_o2stats_20,
        avg(CAST(r.pressurecontrol AS DOUBLE)) OVER (PARTITION BY r.ventilatorid ORDER BY r.eventtime ROWS BETWEEN 19 PRECEDING AND CURRENT ROW) AS avg_pressurecontrol_20,
        avg(CAST(r.minutevolume AS DOUBLE)) OVER (PARTITION BY r.ventilatorid ORDER BY r.eventtime ROWS BETWEEN 19 PRECEDING AND CURRENT ROW) AS avg_minutevolume_20
    FROM "{{database}}"."{{source_table}}" AS r
    WHERE ({{ingest_partitions}})
      AND r.eventtime >= TIMESTAMP '{{window_start}}'
      AND r.eventtime < TIMESTAMP '{{range_end}}'
) AS a
LEFT JOIN "{{database}}"."{{reference_table}}" AS ref
    ON ref.ventilatorid = a.ventilatorid
WHERE a.eventtime >= TIMESTAMP '{{range_start}}'
