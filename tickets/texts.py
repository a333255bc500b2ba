"""What the desk says in groups, in one place."""

ASK_PLACE = "请问具体位置在哪里？可以直接回复楼号、单元或门口（如“3号楼2单元门口”），也可以发一个微信位置。"
ACK = "已收到，工单号 #{id}，已转交【{service}】{grid}。\n问题：{title}{place}\n处理好后会在这里通知您。"
ACK_URGENT = "\n情况紧急，已同时提醒网格员尽快处理；如有人员危险请立即拨打 119/120/110。"
SPLIT = "工作人员核对后，您反映的问题和工单 #{old} 不是同一件事，已单独登记。\n"
MERGED = "已有居民反映，已合并到工单 #{id}，处理后会通知大家。（目前共 {n} 位居民反映）"
CLOSED = "工单 #{id}（{title}）已处理完毕{notes}。感谢反映！"
REOPENED = "工单 #{id}（{title}）已重新打开，正在处理中{notes}。"
ALERT_PARKED = "【工单发送失败】工单 #{id}（{title}）多次发送到工单系统都没有成功，已暂存，会继续重试。最近的错误：{error}"
ALERT_URGENT = "【紧急工单 #{id}】{group}：{title}（{who}反映）{place}"
ALERT_SOURCE = "\n来源：{source}"
# what staff read as a message's source (tickets and alerts say which channel a report came from)
CHANNEL_NAMES = {
    "wechaty": "微信群",
    "simulator": "模拟群",
    "console": "控制台",
    "wecom_bot": "企业微信",
    "wecom_kf": "微信客服",
}
# the conversation around a report (docs/conversation.md)
ASK_PLACE_AGAIN = "好的，记下了。请问具体位置在哪里？可以回复楼号、单元或门口，也可以发一个微信位置。"
SUPPLEMENTED = "已补充到工单 #{id}（{what}）。"
SUPPLEMENTED_CLOSED = "\n这个工单已经处理完毕；如果问题还在，请直接说一下现在的情况，我会重新登记。"
SUPPLEMENTED_URGENT = "\n情况紧急，已提醒网格员尽快处理；如有人员危险请立即拨打 119/120/110。"
