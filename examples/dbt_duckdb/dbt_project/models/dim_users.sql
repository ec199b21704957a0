-- one row per user, in the columns and types the Personalize sync reads
select
    user_uid,
    plan as plan_name,
    lifetime_value_cents / 100.0 as lifetime_value,
    order_count,
    lifetime_value_cents >= 100000 as is_vip,
    cast(signed_up_on as date) as signup_date
from {{ ref('raw_users') }}
